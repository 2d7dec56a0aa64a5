-- repl.caught_up(p_position pg_snapshot, p_upto pg_snapshot, p_job text, p_sync text) -> boolean
-- Whether a lane of sync p_sync whose target has applied this node's changes
-- up to p_position has everything p_upto saw committed: no change of the
-- log (repl.changes) to a table the sync tracks here is visible in p_upto
-- and not in p_position. A position ahead of p_upto covers it (the txid
-- range is then empty). Transactions that touched none of the sync's tables
-- do not count, so an idle lane whose position has not been moved on since
-- is caught up too. Used by `capra kick --wait`, with p_upto the node's
-- pg_current_snapshot() at the kick. Reads repl.delta and repl.consumer_table.
CREATE OR REPLACE FUNCTION repl.caught_up(p_position pg_snapshot, p_upto pg_snapshot, p_job text, p_sync text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT NOT EXISTS (
    SELECT 1
      FROM repl.changes(p_position, p_upto, p_job) c
     WHERE c.relid IN (SELECT t.relid FROM repl.consumer_table t WHERE t.job = p_job AND t.sync = p_sync)
  )
$$;
