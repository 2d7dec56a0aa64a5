-- Clones: one-time copies of tables from source(s) to target(s), queued by
-- repl.clone(...) (or by a sync's copy_data) and carried out by the daemon.
-- No foreign key to repl.sync: a clone's history outlives a removed sync.

CREATE TABLE repl.clone (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sync         text,
  -- [{"schema": ..., "table": ...}], resolved when queued
  tables       jsonb       NOT NULL,
  -- [{"db": ..., "role": "source" | "target"}]
  dbs          jsonb       NOT NULL,
  only_empty   boolean     NOT NULL DEFAULT false,
  drop_indexes boolean     NOT NULL DEFAULT false,
  -- 'request': repl.clone() or capra clone; 'copy_data': a sync's initial copy
  origin       text        NOT NULL DEFAULT 'request' CHECK (origin IN ('request', 'copy_data')),
  state        text        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  cancel_requested boolean NOT NULL DEFAULT false,
  startwhen    timestamptz NOT NULL DEFAULT now(),
  started      timestamptz,
  ended        timestamptz,
  cdate        timestamptz NOT NULL DEFAULT now(),
  error        text
);
CREATE INDEX clone_queued_idx ON repl.clone (startwhen, id) WHERE state = 'queued';

-- Per table and receiving database: state and progress, updated while it runs.
CREATE TABLE repl.clone_table (
  clone_id    bigint NOT NULL REFERENCES repl.clone (id) ON DELETE CASCADE,
  schema_name text   NOT NULL,
  table_name  text   NOT NULL,
  target      text   NOT NULL,
  state       text   NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'skipped', 'failed', 'cancelled')),
  rows        bigint NOT NULL DEFAULT 0,
  bytes       bigint NOT NULL DEFAULT 0,
  -- The source's row estimate (pg_class.reltuples) when the copy began; NULL: unknown.
  est_rows    bigint,
  started     timestamptz,
  ended       timestamptz,
  note        text,
  PRIMARY KEY (clone_id, schema_name, table_name, target)
);

-- Which (sync, table, target) had its initial copy (copy_data), so it is done once.
CREATE TABLE repl.seeded (
  sync        text NOT NULL,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  target      text NOT NULL,
  clone_id    bigint,
  at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sync, schema_name, table_name, target)
);
