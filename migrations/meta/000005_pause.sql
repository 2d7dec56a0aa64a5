-- Syncs paused by `capra pause`: a paused sync captures on its sources as
-- usual but its daemon applies nothing until `capra resume` deletes the row.
-- Kept here, not in the daemon, so a pause survives restarts and holds for
-- whichever daemon of the job is active (a standby that takes over reads it).
-- No foreign key to repl.sync: a pause may name a sync the config has since
-- dropped and added again, and must hold across that.
CREATE TABLE repl.sync_pause (
  sync      text PRIMARY KEY,
  paused_at timestamptz NOT NULL DEFAULT now(),
  -- Who paused it (the CLI's user@host), for status.
  paused_by text
);
