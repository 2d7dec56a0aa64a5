-- The time a delta row records is the clock at the change, not the start of
-- its transaction: multi-master's "latest" strategy compares these across
-- nodes when track_commit_timestamp is off, and a long transaction's late
-- write must not look older than a short one's that came before it.
ALTER TABLE repl.delta ALTER COLUMN at SET DEFAULT clock_timestamp();
