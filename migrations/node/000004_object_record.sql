-- What the capture side consists of, so uninstall drops exactly that and
-- nothing of the control side or the user's. Install adds what appeared in
-- schema repl while it ran this side's migrations and extension files, and
-- every function those files created or replaced (db/side-objects.ts).
-- kind: table, view, materialized view, sequence, foreign table, routine,
-- type or domain; args: a routine's argument types as
-- pg_get_function_identity_arguments writes them.
CREATE TABLE repl.node_object (
  kind text NOT NULL CHECK (kind IN ('table', 'view', 'materialized view', 'sequence', 'foreign table', 'routine', 'type', 'domain')),
  name text NOT NULL,
  args text NOT NULL DEFAULT '',
  PRIMARY KEY (kind, name, args)
);

-- A database installed before this table existed shows install nothing new:
-- record the tables of migrations 000001-000003 and the bookkeeping table.
-- (Its functions are recorded as the extension files replace them.)
INSERT INTO repl.node_object (kind, name)
SELECT 'table', c.relname FROM pg_class c
 WHERE c.relnamespace = 'repl'::regnamespace AND c.relkind = 'r'
   AND c.relname IN ('job', 'delta', 'consumer', 'consumer_table', 'applied', 'node_migrations');
