-- repl.batch_txids(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_limit int) -> SETOF xid8
-- The transaction ids of the changes (repl.changes) to the tables p_relids,
-- one per delta row, in txid order, at most p_limit of them. A lane reads
-- batchRows + 1 of them to choose where its batch ends: at a transaction
-- boundary, never inside a transaction (batchEnd in
-- orchestrator/src/sync/snapshot.ts).
-- Reads repl.delta only; inlined like repl.changes.
CREATE OR REPLACE FUNCTION repl.batch_txids(p_after pg_snapshot, p_upto pg_snapshot, p_job text, p_relids oid[], p_limit int) RETURNS SETOF xid8
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT c.txid
    FROM repl.changes(p_after, p_upto, p_job) c
   WHERE c.relid = ANY (p_relids)
   ORDER BY c.txid
   LIMIT p_limit
$$;
