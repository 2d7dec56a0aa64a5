-- Conflict log of multi-master syncs: every key changed on two or more
-- sources between runs, each source's version of the row, the strategy and
-- what it decided. Written after the run commits on every node.
CREATE TABLE repl.conflict (
  id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  sync       text        NOT NULL,
  table_name text        NOT NULL,   -- schema.table
  key        jsonb       NOT NULL,
  -- [{db, changed_at, clock, row}]: row is null where the key is deleted;
  -- clock says what changed_at is: 'commit' (track_commit_timestamp) or 'change' (clock at the write)
  versions   jsonb       NOT NULL,
  strategy   text        NOT NULL,
  -- winner: that database's row went everywhere; merged: the handler's row did;
  -- deleted: the handler deleted the key everywhere; skipped: each node kept its own
  decision   text        NOT NULL CHECK (decision IN ('winner', 'merged', 'deleted', 'skipped')),
  winner     text,
  detail     jsonb                   -- e.g. {"seed": …, "candidates": […]} for random, the merged row for merged
);
CREATE INDEX conflict_sync_at_idx ON repl.conflict (sync, at);

-- The latest conflicts first, with each version's database and the decision
-- on one line: SELECT * FROM repl.recent_conflicts LIMIT 20;
CREATE VIEW repl.recent_conflicts AS
  SELECT id, at, sync, table_name, key,
         (SELECT string_agg(v->>'db', ',' ORDER BY v->>'db') FROM jsonb_array_elements(versions) v) AS changed_on,
         strategy, decision, winner
    FROM repl.conflict
   ORDER BY id DESC;
