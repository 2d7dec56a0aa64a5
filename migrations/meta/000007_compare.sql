-- capra compare's last result per sync, table and compared database (the
-- scheduled compare writes it; capra status and the metrics read it), and
-- the conflict log's decision for a key settled by capra repair.
CREATE TABLE repl.compare_result (
  sync       text        NOT NULL,
  table_name text        NOT NULL,   -- schema.table
  node       text        NOT NULL,   -- the database compared with the reference
  reference  text        NOT NULL,
  rows       bigint      NOT NULL,   -- rows compared (the reference's)
  missing    bigint      NOT NULL,   -- keys on the reference, not on node
  extra      bigint      NOT NULL,   -- keys on node, not on the reference
  different  bigint      NOT NULL,
  seconds    float8      NOT NULL,
  ran_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sync, table_name, node)
);

-- repaired: capra repair made every database take the rule's choice (winner, or the detail's decision)
ALTER TABLE repl.conflict DROP CONSTRAINT IF EXISTS conflict_decision_check;
ALTER TABLE repl.conflict ADD CONSTRAINT conflict_decision_check CHECK (decision IN ('winner', 'merged', 'deleted', 'skipped', 'repaired'));
