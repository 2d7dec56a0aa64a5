// Install and uninstall of one side of schema repl, through the library: what
// install records as each side's own (test/install.test.ts checks the same
// through the CLI, against whole catalogs), both sides in one database, and
// the client that keeps postgres-migrations' bookkeeping in our table.
import t, { type Test } from 'tap';
import type pg from 'pg';
import { type Side, SCHEMA, installSide, uninstallSide } from '../orchestrator/src/db/schema-side.js';
import { bookkeepingClient } from '../orchestrator/src/db/side-migrations.js';
import { type SchemaObject, recorded, schemaObjects } from '../orchestrator/src/db/side-objects.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { freshDb, sql, testClusters, withClient } from './harness/db.js';

const [c1] = testClusters().clusters;

const sorted = (objects: SchemaObject[]): string[] => objects.map((o) => `${o.kind} ${o.name}(${o.args})`).sort();

/** A fresh database with the given sides installed, in that order. */
async function installed(t: Test, sides: Side[]): Promise<string> {
  const url = await freshDb(t, c1!, 'side');
  await withClient(url, async (c) => {
    for (const side of sides) await installSide(c, side, silentLogger);
  });
  return url;
}

const objectsOf = (url: string): Promise<string[]> => withClient(url, async (c) => sorted(await schemaObjects(c, SCHEMA)));
const recordOf = (url: string, side: Side): Promise<string[]> => withClient(url, async (c) => sorted(await recorded(c, SCHEMA, side)));
const hasRepl = async (url: string): Promise<boolean> => (await sql(url, `SELECT 1 FROM pg_namespace WHERE nspname = 'repl'`)).length === 1;

t.test('a fresh install records every object of its side', async (t) => {
  for (const side of ['node', 'meta'] as const) {
    const url = await installed(t, [side]);
    const objects = await objectsOf(url);
    t.same(await recordOf(url, side), objects, `${side}: the record is every object in repl`);
    t.ok(objects.includes(`table ${side}_migrations()`), `${side}: including the bookkeeping table`);
    t.ok(objects.includes(`table ${side}_object()`), `${side}: and the record itself`);
    t.ok(
      objects.some((o) => o.startsWith('routine ')),
      `${side}: and the extension functions`,
    );
    t.same(await recordOf(url, side === 'node' ? 'meta' : 'node'), [], `${side}: nothing recorded for the other side`);
  }
});

t.test('one database with both sides: uninstalling either leaves the other whole', async (t) => {
  for (const order of [
    ['node', 'meta'],
    ['meta', 'node'],
  ] as const) {
    for (const gone of order) {
      const kept: Side = gone === 'node' ? 'meta' : 'node';
      const what = `installed ${order.join(' then ')}, ${gone} uninstalled`;
      const url = await installed(t, [...order]);
      const alone = await installed(t, [kept]);
      await withClient(url, (c) => uninstallSide(c, gone, silentLogger));
      t.same(await objectsOf(url), await objectsOf(alone), `${what}: repl holds what ${kept} alone installs`);
      t.same(await recordOf(url, kept), await recordOf(alone, kept), `${what}: and ${kept}'s record is intact`);
      await withClient(url, (c) => uninstallSide(c, kept, silentLogger));
      t.notOk(await hasRepl(url), `${what}: after ${kept} too, schema repl is gone`);
    }
  }
});

t.test('a side installed before the record existed is uninstalled whole', async (t) => {
  const url = await installed(t, ['node', 'meta']);
  // As the previous version left it: no record and its migration not recorded.
  for (const side of ['node', 'meta'] as const) {
    await sql(url, `DROP TABLE repl.${side}_object; DELETE FROM repl.${side}_migrations WHERE name = 'object_record'`);
  }
  // Nor had it the migrations that came after object_record (postgres-migrations compares the recorded ones with the files in order).
  const later = ['sync_pause', 'table_group', 'db_group', 'compare_result'];
  await sql(url, `DROP TABLE ${later.map((t) => `repl.${t}`).join(', ')}; DELETE FROM repl.meta_migrations WHERE id >= 4`);
  // The node side's after object_record (any_op) changed no object: only its record goes.
  await sql(url, 'DELETE FROM repl.node_migrations WHERE id >= 5');
  await withClient(url, (c) => uninstallSide(c, 'node', silentLogger));
  const meta = (await objectsOf(await installed(t, ['meta']))).filter((o) => o !== 'table meta_object()' && !later.some((t) => o === `table ${t}()`));
  t.same(await objectsOf(url), meta, 'node uninstalled: what is left is the control side, still without its record');
  await withClient(url, (c) => uninstallSide(c, 'meta', silentLogger));
  t.notOk(await hasRepl(url), 'meta uninstalled: schema repl is gone');
});

t.test('postgres-migrations statements the wrapper does not know are refused, not run', async (t) => {
  const url = await freshDb(t, c1!, 'side');
  await sql(url, 'CREATE SCHEMA repl');
  await withClient(url, async (c: pg.Client) => {
    const client = bookkeepingClient(c, SCHEMA, 'node', new Set(['SELECT 1 AS ours']));
    const lock = await client.query('SELECT pg_try_advisory_lock(-8525285245963000605);');
    t.same(lock.rows, [{ pg_try_advisory_lock: true }], 'its advisory lock goes through');
    await client.query('SELECT pg_advisory_unlock(-8525285245963000605);');
    t.same((await client.query('SELECT 1 AS ours')).rows, [{ ours: 1 }], 'one of our migration files goes through');
    const exists = await client.query({
      text: `SELECT EXISTS (
  SELECT 1
  FROM   pg_catalog.pg_class c
  WHERE  c.relname = $1
  AND    c.relkind = 'r'
);`,
      values: ['migrations'],
    });
    t.same(exists.rows, [{ exists: false }], 'its test for the table asks about ours');
    const reworded = [
      'CREATE TABLE IF NOT EXISTS migrations (id integer PRIMARY KEY, name varchar(100), hash varchar(40))',
      'CREATE TABLE IF NOT EXISTS public.migrations (id integer PRIMARY KEY)',
      'SELECT * FROM migrations ORDER BY id DESC',
    ];
    for (const text of reworded) {
      await t.rejects(client.query(text), /postgres-migrations sent a statement capra does not know/, `refused: ${text.slice(0, 50)}`);
    }
    await t.rejects(
      client.query({ text: 'SELECT to_regclass($1) IS NOT NULL AS exists', values: ['migrations'] }),
      /does not know/,
      'refused: a table test worded otherwise',
    );
    await t.rejects(
      client.query({ text: 'INSERT INTO migrations (id, name, hash) VALUES ($1, $2, $3)', values: [1, 'x', 'y'] }),
      /does not know/,
      'refused: a record worded otherwise',
    );
  });
  t.same(await sql(url, `SELECT relname FROM pg_class WHERE relname ~ 'migrations'`), [], 'no bookkeeping table was created anywhere');
});
