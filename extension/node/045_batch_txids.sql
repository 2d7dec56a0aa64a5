-- repl.batch_txids(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_limit int) -> SETOF xid8
-- The transaction ids of the changes (repl.changes) to the tables p_relids,
-- one per delta row, in txid order, at most p_limit of them. A lane reads
-- batchRows + 1 of them to choose where its batch ends: at a transaction
-- boundary, never inside a transaction (batchEnd in
-- orchestrator/src/sync/snapshot.ts).
-- Reads repl.delta only, in the order of its txid index: the changes range
-- over the whole backlog (up to p_upto), of which only p_limit are wanted,
-- and the planner, whose statistics of the churning delta log lag behind,
-- would take a few for many and read them all by a bitmap scan, then sort
-- (300,000 pending changes: 40 ms against 5 ms for the first 10,001, by
-- hand on PostgreSQL 18), in every run of a backlog: draining 1,000,000
-- changes, the first runs took 239-303 ms against 90-121 ms. So bitmap
-- scans and sorts are off for the function, which is therefore not inlined;
-- its output keeps the order of its ORDER BY.
CREATE OR REPLACE FUNCTION repl.batch_txids(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_limit int) RETURNS SETOF xid8
LANGUAGE sql STABLE PARALLEL SAFE SET enable_bitmapscan = off SET enable_sort = off AS $$
  SELECT c.txid
    FROM repl.changes(p_after, p_upto, p_job) c
   WHERE c.relid = ANY (p_relids)
   ORDER BY c.txid
   LIMIT p_limit
$$;
