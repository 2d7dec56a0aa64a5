-- Control side of a job: what the config declared (copied here so the SQL API
-- can validate names), run history and per-lane state for `capra status`.

CREATE TABLE repl.node (
  name       text PRIMARY KEY,
  -- Connection strings stay in the config file; only a redacted form is kept.
  display    text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repl.sync (
  name       text PRIMARY KEY,
  kick       text    NOT NULL,
  conflict   jsonb   NOT NULL,
  copy_data  text    NOT NULL,
  cascade    boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repl.sync_node (
  sync text NOT NULL REFERENCES repl.sync (name) ON DELETE CASCADE,
  node text NOT NULL REFERENCES repl.node (name) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('source', 'target')),
  PRIMARY KEY (sync, node)
);

CREATE TABLE repl.sync_table (
  sync        text   NOT NULL REFERENCES repl.sync (name) ON DELETE CASCADE,
  schema_name text   NOT NULL,
  table_name  text   NOT NULL,
  key_cols    text[] NOT NULL,
  PRIMARY KEY (sync, schema_name, table_name)
);

-- One lane is a (sync, source, target) pair; its latest state.
CREATE TABLE repl.lane (
  sync          text        NOT NULL,
  source        text        NOT NULL,
  target        text        NOT NULL,
  state         text        NOT NULL DEFAULT 'idle',
  last_ok_at    timestamptz,
  last_run_at   timestamptz,
  rows_applied  bigint      NOT NULL DEFAULT 0,
  -- Whether the target let the applier set session_replication_role = replica;
  -- false: the target's own triggers and foreign keys fire for applied rows.
  replica_role  boolean,
  error         text,
  error_table   text,
  error_at      timestamptz,
  PRIMARY KEY (sync, source, target)
);

-- History of runs that did something or failed (idle runs are not recorded).
CREATE TABLE repl.run (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sync      text        NOT NULL,
  source    text        NOT NULL,
  target    text        NOT NULL,
  started   timestamptz NOT NULL,
  ended     timestamptz NOT NULL,
  rows      bigint      NOT NULL,
  ok        boolean     NOT NULL,
  error     text
);
CREATE INDEX run_sync_started_idx ON repl.run (sync, started);

CREATE TABLE repl.setting (
  key        text PRIMARY KEY,
  value      text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
