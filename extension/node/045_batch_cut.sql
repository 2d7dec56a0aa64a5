-- repl.batch_cut(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_rows int, OUT first xid8, OUT past xid8)
-- Where a lane's batch of at most p_rows changes (repl.changes to the tables
-- p_relids) may end: the first change's txid, and the txid of the change
-- just past p_rows of them (NULL when there are no more). The batch then ends
-- at a transaction boundary, never inside a transaction (batchEnd in
-- orchestrator/src/sync/snapshot.ts).
-- Two reads of repl.delta in the order of its txid index, the second
-- stepping over p_rows entries: the changes range over the whole backlog (up
-- to p_upto), of which only p_rows + 1 are wanted, and the planner, whose
-- statistics of the churning delta log lag behind, would take a few for
-- many and read them all by a bitmap scan, then sort (300,000 pending
-- changes: 40 ms against 5 ms for the first 10,001, by hand on PostgreSQL
-- 18), in every run of a backlog: draining 1,000,000 changes, the first runs
-- took 239-303 ms against 90-121 ms. So bitmap scans and sorts are off for
-- the function. Before 2026-12-07 the daemon took the two txids as
-- aggregates over the first p_rows + 1 txids, through text to bigint
-- (PostgreSQL 13 and 14 have no min or max of xid8): those casts were most
-- of the time (300,000 pending changes, the cut of 40,000: 14.9 against
-- 4.2 ms; of 80,000, 29.0 against 8.3 ms; of 10,000, 3.8 against 1.1 ms;
-- medians of 7 alternating rounds, PostgreSQL 18).
-- (An upgraded node keeps repl.batch_txids, which this replaced, until
-- uninstall drops it with the rest: a daemon of the version before may still
-- call it.)
CREATE OR REPLACE FUNCTION repl.batch_cut(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_rows int, OUT first xid8, OUT past xid8)
LANGUAGE sql STABLE PARALLEL SAFE SET enable_bitmapscan = off SET enable_sort = off AS $$
  SELECT (SELECT c.txid FROM repl.changes(p_after, p_upto, p_job) c WHERE c.relid = ANY (p_relids) ORDER BY c.txid LIMIT 1),
         (SELECT c.txid FROM repl.changes(p_after, p_upto, p_job) c WHERE c.relid = ANY (p_relids) ORDER BY c.txid OFFSET p_rows LIMIT 1)
$$;
