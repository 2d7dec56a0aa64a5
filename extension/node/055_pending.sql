-- repl.pending(p_position pg_snapshot, p_job text, p_sync text) -> (changes bigint, lag_seconds float8)
-- What a lane of sync p_sync still has to apply from this node after the
-- position its target has reached: the number of delta rows committed since
-- (repl.changes up to now) on the tables the sync tracks here, and the age in
-- seconds of the oldest (NULL when there is none). Reads repl.delta and
-- repl.consumer_table; used by status and metrics.
CREATE OR REPLACE FUNCTION repl.pending(p_position pg_snapshot, p_job text, p_sync text, OUT changes bigint, OUT lag_seconds float8)
LANGUAGE sql STABLE AS $$
  SELECT count(*), extract(epoch FROM now() - min(c.at))::float8
    FROM repl.changes(p_position, pg_current_snapshot(), p_job) c
   WHERE c.relid IN (SELECT t.relid FROM repl.consumer_table t WHERE t.job = p_job AND t.sync = p_sync)
$$;
