-- What the capture side consists of, so uninstall drops exactly that and
-- nothing of the control side or the user's: install compares schema repl
-- before and after it runs this side's migrations and extension files and
-- adds what appeared (db/side-objects.ts). kind: table, view, materialized
-- view, sequence, foreign table, routine, type or domain; args: a routine's
-- argument types as pg_get_function_identity_arguments writes them.
CREATE TABLE repl.node_object (
  kind text NOT NULL CHECK (kind IN ('table', 'view', 'materialized view', 'sequence', 'foreign table', 'routine', 'type', 'domain')),
  name text NOT NULL,
  args text NOT NULL DEFAULT '',
  PRIMARY KEY (kind, name, args)
);

-- A database installed before this table existed has nothing new to show
-- the comparison: record what migrations 000001-000003 and the extension
-- files of that time created (repl.kick and repl.capture_row are older
-- names of extension functions). On a new install the functions do not
-- exist yet and the comparison records them.
INSERT INTO repl.node_object (kind, name, args)
SELECT 'table', c.relname, '' FROM pg_class c
 WHERE c.relnamespace = 'repl'::regnamespace AND c.relkind = 'r'
   AND c.relname IN ('job', 'delta', 'consumer', 'consumer_table', 'applied', 'node_migrations')
UNION ALL
SELECT 'routine', p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
 WHERE p.pronamespace = 'repl'::regnamespace
   AND p.proname IN ('applier_origin', 'skip_capture', 'capture_stmt', 'make_capture', 'make_kick', 'refresh_kicks',
                     'kick', 'capture_row');
