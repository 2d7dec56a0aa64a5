// Trap 9, keys: a table without a primary key is refused by name (library and
// CLI), unless tables.keys names a unique index on NOT NULL columns, which
// then keys its replication; an index that cannot identify rows is refused
// by name.
import t from 'tap';
import { sql, testClusters } from './harness/db.js';
import { type Job, cli, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const { clusters } = testClusters();
const [c1, c2] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, v text);
  CREATE TABLE nokey (code text NOT NULL, n int NOT NULL, maybe text, v text);
  CREATE UNIQUE INDEX nokey_code ON nokey (code);
  CREATE UNIQUE INDEX nokey_maybe ON nokey (maybe);
  CREATE UNIQUE INDEX nokey_partial ON nokey (n) WHERE n > 0;
  CREATE UNIQUE INDEX nokey_expr ON nokey (lower(code));
  CREATE INDEX nokey_plain ON nokey (n);
  CREATE TABLE pairs (a int NOT NULL, b text NOT NULL, v text);
  CREATE UNIQUE INDEX pairs_ab ON pairs (b, a);
`;
const syncYaml = (tables: string): string => `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: ${tables}`;

async function captureTriggers(url: string): Promise<string[]> {
  const rows = await sql<{ name: string }>(
    url,
    `SELECT tgrelid::regclass::text || ':' || tgname AS name FROM pg_trigger WHERE tgname LIKE 'capra%' ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

/** The CLI's failure contract: non-zero status, one line on stderr starting with `capra:`, no stack trace. */
async function cliRefuses(t: TapTest, job: Job, mustName: RegExp): Promise<void> {
  const inst = await cli(['--config', job.configPath, 'install']);
  t.equal(inst.code, 0, `install succeeds (stderr: ${inst.stderr})`);
  const r = await cli(['--config', job.configPath, 'add-triggers']);
  t.not(r.code, 0, 'add-triggers fails');
  t.match(r.stderr, /^capra: [^\n]+\n$/, 'stderr is exactly one line starting with "capra:"');
  t.match(r.stderr, mustName, 'the line names the culprit');
  t.notMatch(r.stderr, /\n\s+at |Error:|CapraError/, 'no stack trace or error class');
}

t.test('a table without a primary key is refused by name through the library', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: syncYaml('{ include: [public] }') });
  await t.rejects(setUp(job), /^table public\.nokey on a has no primary key/, 'whole-schema include: the table is named');
  const job2 = await makeJob(t, { nodes: { a: job.urls.a!, b: job.urls.b! }, yaml: syncYaml('{ include: [public.items, public.pairs] }') });
  await t.rejects(setUp(job2), /^table public\.pairs on a has no primary key/, 'named include: the table is named');
  t.same(await captureTriggers(job.urls.a!), [], 'nothing was half set up');
});

t.test('a table without a primary key is refused by name through the CLI', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: syncYaml('{ include: [public] }') });
  await cliRefuses(t, job, /public\.nokey\b.*primary key/);
  t.same(await captureTriggers(job.urls.a!), [], 'no triggers were put on');
});

t.test('a unique index on NOT NULL columns named under tables.keys keys the table', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: syncYaml('{ include: [public.nokey, public.pairs], keys: { public.nokey: nokey_code, "pairs": pairs_ab } }'),
  });
  await setUp(job);
  t.same(
    await sql(job.urls.a!, `SELECT relid::regclass::text AS t, key_cols FROM repl.consumer_table ORDER BY 1`),
    [
      { t: 'nokey', key_cols: ['code'] },
      { t: 'pairs', key_cols: ['b', 'a'] },
    ],
    'the index columns are the keys, in index order',
  );
  startDaemon(t, job);
  const a = job.urls.a!;
  await sql(a, `INSERT INTO nokey (code, n, maybe, v) VALUES ('a', 1, NULL, 'one'), ('b', 2, NULL, 'two'), ('c', 3, 'm', 'three'), ('d', 4, NULL, NULL)`);
  await sql(a, `INSERT INTO pairs VALUES (1, 'x', 'p1'), (1, 'y', 'p2'), (2, 'x', 'p3')`);
  await waitSame(job, 'nokey', ['a', 'b'], { orderBy: 'code' });
  await waitSame(job, 'pairs', ['a', 'b'], { orderBy: 'a, b' });
  t.equal(await digest(job.urls.b!, 'nokey', 'code'), '(a,1,,one)\n(b,2,,two)\n(c,3,m,three)\n(d,4,,)', 'inserts arrived');

  await sql(a, `UPDATE nokey SET v = 'ONE', n = 10 WHERE code = 'a'`); // non-key columns
  await sql(a, `UPDATE nokey SET maybe = 'now set' WHERE code = 'd'`);
  await sql(a, `DELETE FROM nokey WHERE code = 'b'`);
  await sql(a, `UPDATE nokey SET code = 'c2' WHERE code = 'c'`); // key change
  await sql(a, `UPDATE pairs SET v = 'P1' WHERE (a, b) = (1, 'x')`);
  await sql(a, `UPDATE pairs SET b = 'z' WHERE (a, b) = (1, 'y')`);
  await sql(a, `DELETE FROM pairs WHERE (a, b) = (2, 'x')`);
  await waitSame(job, 'nokey', ['a', 'b'], { orderBy: 'code' });
  await waitSame(job, 'pairs', ['a', 'b'], { orderBy: 'a, b' });
  t.equal(await digest(job.urls.b!, 'nokey', 'code'), '(a,10,,ONE)\n(c2,3,m,three)\n(d,4,"now set",)', 'update, delete and key change by the named index');
  t.equal(await digest(job.urls.b!, 'pairs', 'a, b'), '(1,x,P1)\n(1,z,p2)', 'composite unique index as key');
});

t.test('an index that cannot identify rows is refused by name', async (t) => {
  const base = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: syncYaml('{ include: [public.items] }') });
  const urls = { a: base.urls.a!, b: base.urls.b! };
  const cases: [string, string][] = [
    ['nokey_maybe', 'unique index on a nullable column'],
    ['nokey_partial', 'partial unique index'],
    ['nokey_expr', 'unique index on an expression'],
    ['nokey_plain', 'index that is not unique'],
    ['no_such_index', 'index that does not exist'],
  ];
  for (const [index, what] of cases) {
    const job = await makeJob(t, { nodes: urls, yaml: syncYaml(`{ include: [public.nokey], keys: { public.nokey: ${index} } }`) });
    await t.rejects(setUp(job), new RegExp(`^table public\\.nokey on a: index "${index}" `), `${what}: refused, naming table and index`);
  }
  const job = await makeJob(t, { nodes: urls, yaml: syncYaml('{ include: [public.nokey], keys: { public.nokey: nokey_maybe } }') });
  await cliRefuses(t, job, /public\.nokey.*"nokey_maybe"/);
  t.same(await captureTriggers(urls.a), [], 'no triggers were put on');
});
