-- The config's named groups (the groups key), copied here by capra install
-- like the nodes and syncs, so that repl.clone(relgroup =>, dbgroup =>) can
-- resolve them in the calling session. Replaced whole on every install.

-- A table group: its tables in the order the config lists them.
CREATE TABLE repl.table_group (
  name        text NOT NULL,
  position    int  NOT NULL,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  PRIMARY KEY (name, schema_name, table_name)
);

-- A database group: its databases in the order the config lists them; a
-- clone by dbgroup copies from the first to the others.
CREATE TABLE repl.db_group (
  name     text NOT NULL,
  position int  NOT NULL,
  node     text NOT NULL REFERENCES repl.node (name) ON DELETE CASCADE,
  PRIMARY KEY (name, node)
);
