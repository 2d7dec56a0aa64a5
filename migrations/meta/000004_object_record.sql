-- What the control side consists of, so uninstall drops exactly that and
-- nothing of the capture side or the user's. Install adds what appeared in
-- schema repl while it ran this side's migrations and extension files, and
-- every function those files created or replaced (db/side-objects.ts).
-- kind: table, view, materialized view, sequence, foreign table, routine,
-- type or domain; args: a routine's argument types as
-- pg_get_function_identity_arguments writes them.
CREATE TABLE repl.meta_object (
  kind text NOT NULL CHECK (kind IN ('table', 'view', 'materialized view', 'sequence', 'foreign table', 'routine', 'type', 'domain')),
  name text NOT NULL,
  args text NOT NULL DEFAULT '',
  PRIMARY KEY (kind, name, args)
);

-- A database installed before this table existed shows install nothing new:
-- record the tables and the view of migrations 000001-000003 and the
-- bookkeeping table. (Its functions are recorded as the extension files
-- replace them.)
INSERT INTO repl.meta_object (kind, name)
SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END, c.relname FROM pg_class c
 WHERE c.relnamespace = 'repl'::regnamespace AND c.relkind IN ('r', 'v')
   AND c.relname IN ('node', 'sync', 'sync_node', 'sync_table', 'lane', 'run', 'setting', 'clone', 'clone_table', 'seeded',
                     'conflict', 'recent_conflicts', 'meta_migrations');
