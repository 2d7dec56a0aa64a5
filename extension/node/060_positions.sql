-- Positions: how far a lane has got. The receiving node's repl.applied row is
-- the truth and is written in the same transaction as the rows it covers, so
-- a crash can neither lose nor repeat a batch; the source's repl.consumer row
-- is a copy, confirmed after the commit, that only drives the purge of its
-- delta log (it may lag behind, never run ahead).

-- repl.lock_position(p_job, p_sync, p_source, p_initial pg_snapshot DEFAULT NULL) -> pg_snapshot
-- On the receiving node: the position of the lane (p_job, p_sync, p_source ->
-- here), row-locked until the transaction ends, so no other run applies the
-- lane meanwhile (a second daemon, a clone). A lane with no row yet gets
-- p_initial first when given (where it starts: its consumer's registered
-- position); NULL when it has none.
CREATE OR REPLACE FUNCTION repl.lock_position(p_job text, p_sync text, p_source text, p_initial pg_snapshot DEFAULT NULL) RETURNS pg_snapshot
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_position pg_snapshot;
BEGIN
  IF p_initial IS NOT NULL THEN
    INSERT INTO repl.applied (job, sync, source, position) VALUES (p_job, p_sync, p_source, p_initial)
    ON CONFLICT (job, sync, source) DO NOTHING;
  END IF;
  SELECT a.position INTO v_position FROM repl.applied a
   WHERE a.job = p_job AND a.sync = p_sync AND a.source = p_source FOR UPDATE;
  RETURN v_position;
END
$$;

-- repl.store_position(p_job, p_sync, p_source, p_position pg_snapshot) -> void
-- On the receiving node, in the transaction that applied the batch: the lane
-- has applied everything up to p_position.
CREATE OR REPLACE FUNCTION repl.store_position(p_job text, p_sync text, p_source text, p_position pg_snapshot) RETURNS void
LANGUAGE sql VOLATILE AS $$
  INSERT INTO repl.applied (job, sync, source, position) VALUES (p_job, p_sync, p_source, p_position)
  ON CONFLICT (job, sync, source) DO UPDATE SET position = EXCLUDED.position, applied_at = now();
$$;

-- repl.confirm_position(p_job, p_sync, p_target, p_position pg_snapshot) -> void
-- On the source, after the receiver committed: its copy of how far target
-- p_target has got, so repl.delta can be purged up to the oldest consumer.
CREATE OR REPLACE FUNCTION repl.confirm_position(p_job text, p_sync text, p_target text, p_position pg_snapshot) RETURNS void
LANGUAGE sql VOLATILE AS $$
  UPDATE repl.consumer SET position = p_position, updated_at = now()
   WHERE job = p_job AND sync = p_sync AND target = p_target;
$$;
