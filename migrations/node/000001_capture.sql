-- Capture side of a node: the delta log, who consumes it, and how far each
-- consumer has applied it. Positions are pg_snapshot values (the PgQ way), never
-- "id > last id": a transaction's rows become visible at commit, not at insert.

-- Every job installed on this node, whatever its role here: a node that is
-- only a target holds nothing else of its job until the first run, and must
-- not look unused to another job's uninstall.
CREATE TABLE repl.job (
  name         text        PRIMARY KEY,
  installed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per changed key. txid orders nothing by itself; a batch is "every
-- txid visible in the new snapshot and not visible in the old one".
CREATE TABLE repl.delta (
  txid   xid8        NOT NULL DEFAULT pg_current_xact_id(),
  relid  oid         NOT NULL,
  op     "char"      NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
  pk     jsonb,                   -- key columns as an object; NULL for TRUNCATE
  origin text,                    -- job that applied this change (cascade), NULL for local writes
  at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delta_txid_idx ON repl.delta (txid);

-- A consumer is one (job, sync, target) lane reading this node as a source.
-- position: the snapshot up to which the target has confirmed applying; the
-- target's own repl.applied row is authoritative, this copy only drives purge.
CREATE TABLE repl.consumer (
  job         text        NOT NULL,
  sync        text        NOT NULL,
  target      text        NOT NULL,
  kick        boolean     NOT NULL DEFAULT true,
  position    pg_snapshot NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job, sync, target)
);

-- Which tables each (job, sync) captures here; the capture triggers are shared
-- by every consumer and dropped when no consumer tracks the table any more.
CREATE TABLE repl.consumer_table (
  job      text NOT NULL,
  sync     text NOT NULL,
  relid    oid  NOT NULL,
  key_cols text[] NOT NULL,
  PRIMARY KEY (job, sync, relid)
);

-- Receiving side: how far this node has applied each source's deltas for a
-- lane. Written in the same transaction as the applied rows, so a crash can
-- neither lose nor repeat a batch.
CREATE TABLE repl.applied (
  job        text        NOT NULL,
  sync       text        NOT NULL,
  source     text        NOT NULL,
  position   pg_snapshot NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job, sync, source)
);
