// `capra install` / `capra uninstall` through the real CLI: where things go
// (metadata database, schema repl, bookkeeping tables), repeated and
// concurrent installs, a user's own `migrations` table, metadata inside a
// node, exact catalog restoration on uninstall, and two jobs sharing a node.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { type Job, cli, digest, makeJob, startDaemon, waitSame } from './harness/capra.js';
import { type ClusterInfo, freshDb, sql, testClusters, urlFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

// The user's schema: a table with a foreign key, a trigger, a function, a
// type and a sequence in public, so "nothing changed in public" has teeth.
const schema = `
  CREATE TYPE mood AS ENUM ('ok', 'meh');
  CREATE TABLE items (id int PRIMARY KEY, name text, m mood);
  CREATE TABLE other (id serial PRIMARY KEY, item int REFERENCES items (id), note text);
  CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
  CREATE TRIGGER items_touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
`;

/** The ids postgres-migrations records: 0 (its own table) and one per numbered file. */
const migrationIds = (side: 'node' | 'meta'): number[] => [
  0,
  ...readdirSync(path.join(packageRoot(), 'migrations', side))
    .filter((f) => f.endsWith('.sql'))
    .map((f) => Number.parseInt(f, 10))
    .sort((x, y) => x - y),
];
const ids = (rows: string[]): number[] => rows.map((r) => Number.parseInt(r, 10));

const byCodePoint = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

type Catalog = Record<string, string[]>;

const NOT_SYSTEM = `n.nspname NOT IN ('pg_catalog', 'information_schema')`;

/**
 * The parts of a database's catalog install may touch, as sorted text.
 * pg_temp_N / pg_toast_temp_N namespaces are left out: PostgreSQL creates
 * them the first time any session (here, the applier) uses a temporary
 * table and keeps them for reuse; they hold nothing once the session ends.
 */
async function catalog(url: string): Promise<Catalog> {
  const list = async (q: string): Promise<string[]> => (await sql<{ x: string }>(url, q)).map((r) => r.x).sort(byCodePoint);
  return {
    namespaces: await list(`SELECT nspname AS x FROM pg_namespace
      WHERE nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'`),
    classes: await list(`SELECT format('%s.%s (%s)', n.nspname, c.relname, c.relkind) AS x
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${NOT_SYSTEM} AND n.nspname <> 'pg_toast'`),
    procs: await list(`SELECT format('%s.%s', n.nspname, p.proname) AS x
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${NOT_SYSTEM}`),
    triggers: await list(`SELECT format('%s on %s', tg.tgname, tg.tgrelid::regclass) AS x FROM pg_trigger tg`),
    types: await list(`SELECT format('%s.%s', n.nspname, ty.typname) AS x
      FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace
      WHERE ${NOT_SYSTEM} AND n.nspname <> 'pg_toast'`),
  };
}

/**
 * For comparing two different databases: foreign-key triggers are named
 * after their constraint's OID, which differs between databases.
 */
function portable(cat: Catalog): Catalog {
  return { ...cat, triggers: cat.triggers!.map((x) => x.replace(/^(RI_ConstraintTrigger_[ac]_)\d+/, '$1<oid>')).sort(byCodePoint) };
}

/** Objects in schema public (classes, functions, types). */
async function publicObjects(url: string): Promise<string[]> {
  const cat = await catalog(url);
  return [...cat.classes!, ...cat.procs!, ...cat.types!].filter((x) => x.startsWith('public.'));
}

/**
 * The server's databases. Other test files run at the same time and create
 * and drop their own fresh databases (name_<12 hex>) and their jobs'
 * metadata databases (capra_*): those are left out, except `keep`.
 */
async function databases(cluster: ClusterInfo, keep: string[] = []): Promise<string[]> {
  const rows = await sql<{ datname: string }>(urlFor(cluster, 'postgres'), 'SELECT datname FROM pg_database');
  return rows
    .map((r) => r.datname)
    .sort(byCodePoint)
    .filter((d) => keep.includes(d) || !(/^\w+_[0-9a-f]{12}$/.test(d) || d.startsWith('capra_')));
}

async function dbExists(cluster: ClusterInfo, name: string): Promise<boolean> {
  return (await sql(urlFor(cluster, 'postgres'), 'SELECT 1 FROM pg_database WHERE datname = $1', [name])).length === 1;
}

async function relExists(url: string, rel: string): Promise<boolean> {
  return (await sql<{ ok: boolean }>(url, 'SELECT to_regclass($1) IS NOT NULL AS ok', [rel]))[0]!.ok;
}

async function hasSchema(url: string, name: string): Promise<boolean> {
  return (await sql(url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).length === 1;
}

/** The bookkeeping rows ("id name hash"), to compare installs. */
async function migrationRows(url: string, table: string): Promise<string[]> {
  return (await sql<{ x: string }>(url, `SELECT format('%s %s %s', id, name, hash) AS x FROM ${table} ORDER BY id`)).map((r) => r.x);
}

const metaDbName = (job: Job): string => `capra_${job.name}`;

async function run(t: Test, job: Job, ...args: string[]): Promise<void> {
  const r = await cli(['--config', job.configPath, ...args]);
  t.equal(r.code, 0, `capra ${args.join(' ')} exits 0${r.code ? `: ${r.stderr.trim()}` : ''}`);
}

t.test('install creates the metadata database and schema repl, bookkeeping in repl, nothing in public; twice is harmless', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }',
  });
  const publicBefore = { a: await publicObjects(job.urls.a!), b: await publicObjects(job.urls.b!) };
  t.ok(publicBefore.a.includes('public.items (r)'), 'control: the public snapshot sees the user table');
  t.notOk(await dbExists(c1!, metaDbName(job)), 'no metadata database before install');

  const first = await cli(['--config', job.configPath, 'install']);
  t.equal(first.code, 0, `install exits 0 ${first.stderr}`);
  t.match(first.stdout, new RegExp(`installed job ${job.name}`));

  t.ok(await dbExists(c1!, metaDbName(job)), `capra_${job.name} exists on the first node's server`);
  t.notOk(await dbExists(c2!, metaDbName(job)), "and not on the second node's server");
  const meta = urlFor(c1!, metaDbName(job));
  t.equal(job.cfg.metadata.replace(/\/+$/, ''), meta.replace(/\/+$/, ''), 'the config resolves the same default metadata URL');

  for (const n of ['a', 'b']) {
    const url = job.urls[n]!;
    t.ok(await hasSchema(url, 'repl'), `${n}: schema repl exists`);
    t.ok(await relExists(url, 'repl.node_migrations'), `${n}: repl.node_migrations exists`);
    t.notOk(await relExists(url, 'repl.meta_migrations'), `${n}: no control side on a plain node`);
    t.same(ids(await migrationRows(url, 'repl.node_migrations')), migrationIds('node'), `${n}: one bookkeeping row per node migration`);
    t.same(await sql(url, `SELECT relname FROM pg_class WHERE relname = 'migrations'`), [], `${n}: no table "migrations" in any schema`);
    t.same(await publicObjects(url), publicBefore[n as 'a' | 'b'], `${n}: public is unchanged`);
  }
  t.ok(await hasSchema(meta, 'repl'), 'metadata: schema repl exists');
  t.ok(await relExists(meta, 'repl.meta_migrations'), 'metadata: repl.meta_migrations exists');
  t.notOk(await relExists(meta, 'repl.node_migrations'), 'metadata: no capture side in a pure metadata database');
  t.same(ids(await migrationRows(meta, 'repl.meta_migrations')), migrationIds('meta'), 'metadata: one bookkeeping row per meta migration');
  t.same(await sql(meta, `SELECT relname FROM pg_class WHERE relname = 'migrations'`), [], 'metadata: no table "migrations"');
  t.same(await publicObjects(meta), [], 'metadata: nothing in public');

  const after1 = { a: await catalog(job.urls.a!), b: await catalog(job.urls.b!), meta: await catalog(meta) };
  const rows1 = { a: await migrationRows(job.urls.a!, 'repl.node_migrations'), meta: await migrationRows(meta, 'repl.meta_migrations') };
  const second = await cli(['--config', job.configPath, 'install']);
  t.equal(second.code, 0, `a second install exits 0 ${second.stderr}`);
  t.same({ a: await catalog(job.urls.a!), b: await catalog(job.urls.b!), meta: await catalog(meta) }, after1, 'the second install changed no catalog');
  t.same(
    { a: await migrationRows(job.urls.a!, 'repl.node_migrations'), meta: await migrationRows(meta, 'repl.meta_migrations') },
    rows1,
    'and no bookkeeping row',
  );
});

t.test('two installs at the same moment both succeed and leave one consistent install', async (t) => {
  const spec = {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }',
  };
  // The reference: the same setup installed once, alone.
  const ref = await makeJob(t, spec);
  await run(t, ref, 'install');
  const job = await makeJob(t, spec);
  const [x, y] = await Promise.all([cli(['--config', job.configPath, 'install']), cli(['--config', job.configPath, 'install'])]);
  t.equal(x.code, 0, `first concurrent install exits 0 ${x.stderr}`);
  t.equal(y.code, 0, `second concurrent install exits 0 ${y.stderr}`);

  t.same(
    await sql(urlFor(c1!, 'postgres'), 'SELECT datname FROM pg_database WHERE datname = $1', [metaDbName(job)]),
    [{ datname: metaDbName(job) }],
    'one metadata database',
  );
  const meta = urlFor(c1!, metaDbName(job));
  const refMeta = urlFor(c1!, metaDbName(ref));
  t.same(portable(await catalog(meta)), portable(await catalog(refMeta)), 'the metadata database matches a single install');
  t.same(await migrationRows(meta, 'repl.meta_migrations'), await migrationRows(refMeta, 'repl.meta_migrations'), 'each meta migration recorded once');
  for (const n of ['a', 'b']) {
    t.same(portable(await catalog(job.urls[n]!)), portable(await catalog(ref.urls[n]!)), `${n}: the catalog matches a single install`);
    t.same(
      await migrationRows(job.urls[n]!, 'repl.node_migrations'),
      await migrationRows(ref.urls[n]!, 'repl.node_migrations'),
      `${n}: each node migration recorded once`,
    );
  }
  t.same(await sql(meta, 'SELECT name FROM repl.sync ORDER BY 1'), [{ name: 's' }], 'the config was published once');
});

// Shaped like postgres-migrations' own table, with rows that would make it
// fail (unknown names, wrong hashes) if it ever read this table.
const userMigrations = `
  CREATE TABLE migrations (id integer PRIMARY KEY, name varchar(100) UNIQUE NOT NULL, hash varchar(40) NOT NULL,
                           executed_at timestamp DEFAULT current_timestamp);
  INSERT INTO migrations VALUES (0, 'create-migrations-table', 'not-a-hash', '2020-01-01'),
                                (1, 'create-users', '0000', '2020-01-02'), (7, 'add-email', '1111', '2020-01-03');
`;

t.test('a user table public.migrations does not confuse install and is left untouched', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: schema + userMigrations,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }',
  });
  const before = { a: await digest(job.urls.a!, 'public.migrations', 'id'), b: await digest(job.urls.b!, 'public.migrations', 'id') };
  const cols = `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) AS c
    FROM pg_attribute WHERE attrelid = 'public.migrations'::regclass AND attnum > 0 AND NOT attisdropped`;
  const colsBefore = await sql(job.urls.a!, cols);
  t.match(before.a, /create-users/, 'control: the digest sees the rows');

  await run(t, job, 'install');
  for (const n of ['a', 'b'] as const) {
    const url = job.urls[n]!;
    t.equal(await digest(url, 'public.migrations', 'id'), before[n], `${n}: public.migrations rows untouched`);
    t.same(await sql(url, cols), colsBefore, `${n}: public.migrations columns untouched`);
    const rows = await migrationRows(url, 'repl.node_migrations');
    t.same(ids(rows), migrationIds('node'), `${n}: our own bookkeeping has every node migration`);
    t.notOk(
      rows.some((r) => /create-users|add-email/.test(r)),
      `${n}: nothing of the user's table leaked into ours`,
    );
    t.ok(await relExists(url, 'repl.delta'), `${n}: the migrations really ran`);
  }
  await run(t, job, 'install');
  await run(t, job, 'uninstall');
  for (const n of ['a', 'b'] as const) {
    t.equal(await digest(job.urls[n]!, 'public.migrations', 'id'), before[n], `${n}: uninstall left public.migrations alone`);
    t.notOk(await hasSchema(job.urls[n]!, 'repl'), `${n}: repl is gone`);
  }
});

// A second user table `migrations`, shaped otherwise, in a schema the
// database puts first on every session's search_path: where an unqualified
// `migrations` would be read or created.
const searchPathMigrations = `
  CREATE SCHEMA app;
  CREATE TABLE app.migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL);
  INSERT INTO app.migrations VALUES ('2024_01_init', '2024-01-01 00:00+00'), ('2024_02_users', '2024-02-01 00:00+00');
  DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = app, public', current_database()); END $$;
`;

/** Rows and columns of the user's two `migrations` tables. */
async function userMigrationTables(url: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [table, key] of [
    ['public.migrations', 'id'],
    ['app.migrations', 'version'],
  ] as const) {
    const cols = await sql<{ c: string }>(
      url,
      `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) AS c
      FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
      [table],
    );
    out[table] = `${cols[0]!.c}\n${await digest(url, table, key)}`;
  }
  return out;
}

/** The bookkeeping rows with the time each migration ran: a migration run again would show a new one. */
async function migrationRuns(url: string, side: 'node' | 'meta'): Promise<string[]> {
  return (await sql<{ x: string }>(url, `SELECT format('%s %s %s %s', id, name, hash, executed_at) AS x FROM repl.${side}_migrations ORDER BY id`)).map(
    (r) => r.x,
  );
}

/** The migration that created the object record: the previous version is the one before it. */
const OBJECT_RECORD = 4;

/** What the migrations after the object record created, per side: the previous version had none of it. */
const LATER_TABLES: Record<'node' | 'meta', string[]> = { node: [], meta: ['sync_pause', 'table_group', 'db_group', 'compare_result'] };

/**
 * The side as the version before the object record left it: no
 * repl.<side>_object nor what later migrations made, those migrations not
 * recorded (postgres-migrations compares the recorded ones with the files in
 * order, so a gap would not pass), and without the extension function `fn`,
 * as if this version had added it.
 */
async function asPreviousVersion(url: string, side: 'node' | 'meta', fn: string): Promise<void> {
  const later = LATER_TABLES[side].map((t) => `DROP TABLE repl.${t};`).join(' ');
  await sql(url, `DROP TABLE repl.${side}_object; ${later} DELETE FROM repl.${side}_migrations WHERE id >= ${OBJECT_RECORD}; DROP FUNCTION repl.${fn}`);
}

t.test('user tables named migrations, in public and first on the search_path: untouched by install, upgrade and uninstall', async (t) => {
  const aUrl = await freshDb(t, c1!, 'a');
  const bUrl = await freshDb(t, c2!, 'b');
  for (const u of [aUrl, bUrl]) await sql(u, schema + userMigrations + searchPathMigrations);
  // Metadata inside a: both sides' bookkeeping passes by the user's tables there.
  const job = await makeJob(t, {
    nodes: { a: aUrl, b: bUrl },
    yaml: `metadata: ${aUrl}\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }`,
  });
  const urls = { a: aUrl, b: bUrl };
  const sides = { a: ['node', 'meta'], b: ['node'] } as const;
  t.same(await sql(aUrl, 'SHOW search_path'), [{ search_path: 'app, public' }], 'control: sessions start with app first on the search_path');
  const before = { a: await catalog(aUrl), b: await catalog(bUrl) };
  const tables = { a: await userMigrationTables(aUrl), b: await userMigrationTables(bUrl) };
  t.match(tables.a['app.migrations'], /2024_02_users/, 'control: the snapshot sees the rows');
  const untouched = async (when: string): Promise<void> => {
    for (const n of ['a', 'b'] as const) {
      t.same(await userMigrationTables(urls[n]), tables[n], `${n}: public.migrations and app.migrations have the same rows and columns after ${when}`);
      t.same(
        await sql(urls[n], `SELECT relnamespace::regnamespace::text AS s FROM pg_class WHERE relname = 'migrations' ORDER BY 1`),
        [{ s: 'app' }, { s: 'public' }],
        `${n}: no other table "migrations" after ${when}`,
      );
    }
  };

  await run(t, job, 'install');
  await untouched('install');
  const runs: Record<string, string[]> = {};
  for (const n of ['a', 'b'] as const) {
    for (const side of sides[n]) {
      runs[`${n} ${side}`] = await migrationRuns(urls[n], side);
      t.same(ids(runs[`${n} ${side}`]!), migrationIds(side), `${n}: repl.${side}_migrations has every ${side} migration`);
    }
  }

  // Upgrade a database the previous version installed.
  for (const n of ['a', 'b'] as const) await asPreviousVersion(urls[n], 'node', 'skip_capture()');
  await asPreviousVersion(aUrl, 'meta', 'clone_cancel(bigint)');
  await run(t, job, 'install');
  await untouched('an upgrade');
  for (const n of ['a', 'b'] as const) {
    for (const side of sides[n]) {
      const after = await migrationRuns(urls[n], side);
      const previous = (rows: string[]): string[] => rows.filter((r) => Number.parseInt(r, 10) < OBJECT_RECORD);
      t.same(previous(after), previous(runs[`${n} ${side}`]!), `${n}: the upgrade ran no earlier ${side} migration again`);
      t.same(ids(after), migrationIds(side), `${n}: and ran the new one`);
    }
    t.same(
      await sql(urls[n], `SELECT name FROM repl.node_object WHERE kind = 'routine' AND name = 'skip_capture'`),
      [{ name: 'skip_capture' }],
      `${n}: the upgrade recorded the function it added`,
    );
  }
  t.same(
    await sql(aUrl, `SELECT name FROM repl.meta_object WHERE kind = 'routine' AND name = 'clone_cancel'`),
    [{ name: 'clone_cancel' }],
    "a: and the control side's",
  );

  await run(t, job, 'uninstall');
  await untouched('uninstall');
  t.same(await catalog(aUrl), before.a, 'a: catalog exactly as before install');
  t.same(await catalog(bUrl), before.b, 'b: catalog exactly as before install');
});

t.test("metadata inside node a's own database: both sides coexist and uninstall removes both", async (t) => {
  const aUrl = await freshDb(t, c1!, 'a');
  const bUrl = await freshDb(t, c2!, 'b');
  for (const u of [aUrl, bUrl]) await sql(u, schema + userMigrations);
  const job = await makeJob(t, {
    nodes: { a: aUrl, b: bUrl },
    yaml: `metadata: ${aUrl}\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }`,
  });
  t.notOk(job.cfg.metadataIsDefault, 'control: the config names its metadata database');
  const before = { a: await catalog(aUrl), b: await catalog(bUrl) };
  const dbsBefore = await databases(c1!, [metaDbName(job)]);

  await run(t, job, 'install');
  t.notOk(await dbExists(c1!, metaDbName(job)), 'no capra_<name> database was created');
  for (const rel of ['repl.node_migrations', 'repl.meta_migrations', 'repl.delta', 'repl.sync', 'repl.lane']) {
    t.ok(await relExists(aUrl, rel), `a holds ${rel}`);
  }
  t.notOk(await relExists(bUrl, 'repl.meta_migrations'), 'b holds no control side');
  t.same(
    await publicObjects(aUrl),
    before.a.classes!.concat(before.a.procs!, before.a.types!).filter((x) => x.startsWith('public.')),
    'a: nothing new in public',
  );

  await run(t, job, 'add-triggers');
  const d = startDaemon(t, job);
  await sql(aUrl, `INSERT INTO items VALUES (1, 'one', 'ok'), (2, 'two', 'meh')`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  t.equal(await digest(bUrl, 'items', 'id'), '(1,one,ok)\n(2,two,meh)', 'replicated through a metadata database inside a');
  await d.stop();

  await run(t, job, 'uninstall');
  t.same(await catalog(aUrl), before.a, 'a: catalog exactly as before install');
  t.same(await catalog(bUrl), before.b, 'b: catalog exactly as before install');
  t.same(await databases(c1!, [metaDbName(job)]), dbsBefore, 'no database created or dropped');
  t.match(await digest(aUrl, 'public.migrations', 'id'), /create-users/, "a's own migrations table survived");
});

t.test('uninstall after install, add-triggers and a daemon run leaves every catalog exactly as before', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public] }',
  });
  const nodes = ['a', 'b', 'c'];
  const keep = [metaDbName(job)];
  const before: Record<string, Catalog> = {};
  for (const n of nodes) before[n] = await catalog(job.urls[n]!);
  const servers = [c1!, c2!, c3!];
  const dbsBefore = await Promise.all(servers.map((c) => databases(c, keep)));
  t.notOk(dbsBefore[0]!.includes(metaDbName(job)), 'control: no metadata database before install');

  await run(t, job, 'install');
  const tr = await cli(['--config', job.configPath, 'add-triggers']);
  t.equal(tr.code, 0, `add-triggers exits 0 ${tr.stderr}`);
  t.notSame((await catalog(job.urls.a!)).triggers, before.a!.triggers, 'control: the snapshot sees the capture triggers');
  t.ok((await databases(c1!, keep)).includes(metaDbName(job)), 'control: the snapshot sees the metadata database');

  const d = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'one', 'ok'), (2, 'two', 'meh')`);
  await sql(job.urls.a!, `INSERT INTO other (item, note) VALUES (1, 'x'), (2, 'y')`);
  await sql(job.urls.a!, `UPDATE items SET name = 'uno' WHERE id = 1`);
  for (const table of ['items', 'other']) await waitSame(job, table, nodes, { orderBy: 'id' });
  t.equal(await digest(job.urls.c!, 'items', 'id'), '(1,uno,ok)\n(2,two,meh)', 'the daemon replicated');
  await d.stop();

  const un = await cli(['--config', job.configPath, 'uninstall']);
  t.equal(un.code, 0, `uninstall exits 0 ${un.stderr}`);
  t.match(un.stdout, new RegExp(`uninstalled job ${job.name}`));
  for (const n of nodes) t.same(await catalog(job.urls[n]!), before[n], `${n}: catalog exactly as before install`);
  const dbsAfter = await Promise.all(servers.map((c) => databases(c, keep)));
  t.same(dbsAfter, dbsBefore, 'every server has the same databases as before; the metadata database is gone');
  t.notOk(await dbExists(c1!, metaDbName(job)), 'the metadata database is gone');
  t.equal(await digest(job.urls.b!, 'items', 'id'), '(1,uno,ok)\n(2,two,meh)', 'replicated user data stays');

  const again = await cli(['--config', job.configPath, 'uninstall']);
  t.equal(again.code, 0, `a second uninstall is harmless ${again.stderr}`);
  for (const n of nodes) t.same(await catalog(job.urls[n]!), before[n], `${n}: still as before`);
});

/** job1: a -> b (items); job2: b -> c (other). Node b serves both, each job with its own name and metadata. */
async function twoJobs(t: Test): Promise<{ job1: Job; job2: Job; before: Record<'a' | 'b' | 'c', Catalog> }> {
  const job1 = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s1:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }',
  });
  const job2 = await makeJob(t, {
    nodes: { b: job1.urls.b!, c: c3! },
    schema,
    yaml: 'syncs:\n  s2:\n    sources: [b]\n    targets: [c]\n    tables: { include: [public.other] }',
  });
  const before = { a: await catalog(job1.urls.a!), b: await catalog(job1.urls.b!), c: await catalog(job2.urls.c!) };
  await run(t, job1, 'install');
  await run(t, job1, 'add-triggers');
  await run(t, job2, 'install');
  await run(t, job2, 'add-triggers');
  t.ok(await dbExists(c2!, metaDbName(job2)), "job2 has its own metadata database on b's server");
  return { job1, job2, before };
}

/** job2 replicates something b -> c. */
async function job2Works(t: Test, job2: Job): Promise<void> {
  const d2 = startDaemon(t, job2);
  await sql(job2.urls.b!, `INSERT INTO other (item, note) VALUES (NULL, 'b only')`);
  await waitSame(job2, 'other', ['b', 'c'], { orderBy: 'id' });
  t.equal(await digest(job2.urls.c!, 'other', 'id'), '(1,,"b only")', 'job2 replicated b -> c');
  await d2.stop();
}

async function uninstallJob2(t: Test, job1: Job, job2: Job, before: Record<'a' | 'b' | 'c', Catalog>): Promise<boolean> {
  const b = job1.urls.b!;
  await run(t, job2, 'uninstall');
  t.notOk(await hasSchema(job2.urls.c!, 'repl'), 'c (job2 only) lost its repl schema');
  t.same(await catalog(job2.urls.c!), before.c, 'c: catalog exactly as before');
  t.notOk(await dbExists(c2!, metaDbName(job2)), "job2's metadata database is gone");
  t.ok(await dbExists(c1!, metaDbName(job1)), "job1's metadata database stays");
  const kept = await hasSchema(b, 'repl');
  t.ok(kept, 'b keeps its repl schema for job1');
  if (!kept) return false;
  t.ok(await relExists(b, 'repl.applied'), 'b keeps repl.applied');
  t.same(
    await sql(b, `SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.other'::regclass AND NOT tgisinternal`),
    [],
    "job2's capture triggers on b are gone",
  );
  return true;
}

async function job1StillWorksThenUninstall(t: Test, job1: Job, before: Record<'a' | 'b' | 'c', Catalog>, key: number): Promise<void> {
  const b = job1.urls.b!;
  const d1 = startDaemon(t, job1);
  await sql(job1.urls.a!, `INSERT INTO items VALUES ($1, 'after job2 left', 'ok')`, [key]);
  await waitSame(job1, 'items', ['a', 'b'], { orderBy: 'id' });
  t.match(await digest(b, 'items', 'id'), `(${key},"after job2 left",ok)`, 'job1 still replicates a -> b');
  await d1.stop();

  await run(t, job1, 'uninstall');
  t.notOk(await hasSchema(b, 'repl'), 'once job1 is uninstalled too, b has no repl schema');
  t.same(await catalog(b), before.b, 'b: catalog exactly as before both installs');
  t.same(await catalog(job1.urls.a!), before.a, 'a: catalog exactly as before');
  t.notOk(await dbExists(c1!, metaDbName(job1)), "job1's metadata database is gone");
}

t.test('two jobs sharing node b: uninstalling one keeps what the other needs', async (t) => {
  const { job1, job2, before } = await twoJobs(t);
  // Both jobs have run and replicated.
  const d1 = startDaemon(t, job1);
  await sql(job1.urls.a!, `INSERT INTO items VALUES (1, 'one', 'ok'), (2, 'two', 'meh')`);
  await waitSame(job1, 'items', ['a', 'b'], { orderBy: 'id' });
  await d1.stop();
  await job2Works(t, job2);

  if (!(await uninstallJob2(t, job1, job2, before))) return;
  await job1StillWorksThenUninstall(t, job1, before, 3);
});

// A node that is only job1's target holds nothing of job1 but its repl.job
// row until job1's first run: job2's uninstall must still leave it alone.
t.test('two jobs sharing node b, the first never run yet: uninstalling the second keeps b for it', async (t) => {
  const { job1, job2, before } = await twoJobs(t);
  await job2Works(t, job2);
  // job1 has installed and added its triggers, but its daemon has not run yet.
  if (!(await uninstallJob2(t, job1, job2, before))) return;
  await job1StillWorksThenUninstall(t, job1, before, 1);
});
