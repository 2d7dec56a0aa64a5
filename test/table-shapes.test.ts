// Table shapes (tables.options): a table written under another name on the
// targets, only some of its columns, target-side expressions and a row
// filter, through copy_data and the lanes, under concurrent writes; and
// every bad option refused at add-triggers by name, all at once.
import t from 'tap';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { freshDb, sql, testClusters, waitFor } from './harness/db.js';
import { type Job, cli, makeJob, setUp, startDaemon } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const schema = `
  CREATE TABLE orders (id int PRIMARY KEY, region text NOT NULL, total int, secret text);
  CREATE SCHEMA archive;
  CREATE TABLE archive.orders_copy (id int PRIMARY KEY, region text, total int, total30 int, extra text DEFAULT 'target only');
  CREATE TABLE other (id int PRIMARY KEY, region text);
`;

const shaped = `
      options:
        public.orders:
          target: archive.orders_copy
          columns: [id, region, total]
          expressions: { total30: "total * 30" }
          where: "region = 'eu'"`;

/** What the target must hold: the source's matching rows, in the shape. */
const expectedSql = `SELECT string_agg(format('%s|%s|%s|%s', id, region, total, total * 30), E'\\n' ORDER BY id) AS d FROM orders WHERE region = 'eu'`;
const actualSql = `SELECT string_agg(format('%s|%s|%s|%s', id, region, total, total30), E'\\n' ORDER BY id) AS d FROM archive.orders_copy`;

async function one(url: string, q: string): Promise<string> {
  return (await sql<{ d: string | null }>(url, q))[0]?.d ?? '';
}

async function waitShaped(job: Job, source: string, target: string): Promise<void> {
  await waitFor(async () => (await one(job.urls[source]!, expectedSql)) === (await one(job.urls[target]!, actualSql)), {
    what: 'the target to hold the shaped rows',
    timeoutMs: 60_000,
  });
}

t.test('renamed target, column list, expression and row filter: copy_data, then changes under concurrent writes', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.orders]${shaped}`,
  });
  const a = job.urls.a!;
  const b = job.urls.b!;
  await sql(a, `INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, 'secret' FROM generate_series(1, 200) g`);
  await setUp(job);
  startDaemon(t, job);
  await waitShaped(job, 'a', 'b');
  t.equal((await sql(b, 'SELECT count(*)::int AS n FROM archive.orders_copy'))[0]!.n, 100, 'copy_data copied only the matching rows');
  t.equal((await sql(b, 'SELECT count(*)::int AS n FROM orders'))[0]!.n, 0, 'nothing went to the table of the source name');
  t.same(await sql(b, `SELECT DISTINCT extra FROM archive.orders_copy`), [{ extra: 'target only' }], 'a column outside the list keeps its default');

  // Concurrent writers, each on its own keys; rows move in and out of the filter.
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; i < 30; i++) {
      const id = 1000 + w * 100 + i;
      await sql(a, `INSERT INTO orders VALUES ($1, $2, $3, 'x')`, [id, i % 2 ? 'eu' : 'us', i]);
      await sql(a, `UPDATE orders SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, total = total + 1 WHERE id = $1`, [id]);
      if (i % 5 === 0) await sql(a, `DELETE FROM orders WHERE id = $1`, [id]);
    }
  };
  await Promise.all([0, 1, 2].map(writer));
  await sql(a, `UPDATE orders SET region = 'eu' WHERE id IN (1, 3, 5)`); // start matching: inserted
  await sql(a, `UPDATE orders SET region = 'us' WHERE id IN (2, 4, 6)`); // stop matching: deleted
  await sql(a, `DELETE FROM orders WHERE id IN (7, 9)`); // non-matching rows: nothing to do
  await sql(a, `UPDATE orders SET id = id + 5000 WHERE id IN (8, 10)`); // key change of matching rows
  await sql(a, `UPDATE orders SET secret = 'changed' WHERE id = 12`); // a column not replicated
  await waitShaped(job, 'a', 'b');
  t.same(
    await sql(b, `SELECT id, total30 FROM archive.orders_copy WHERE id IN (1, 2, 8, 5008) ORDER BY id`),
    [
      { id: 1, total30: 30 },
      { id: 5008, total30: 240 },
    ],
    'moved in, moved out and re-keyed as the filter says, the expression computed on the source row',
  );

  await sql(a, `BEGIN; TRUNCATE orders; INSERT INTO orders VALUES (1, 'eu', 7, 'x'), (2, 'us', 8, 'x'); COMMIT`);
  await waitShaped(job, 'a', 'b');
  t.equal(await one(b, actualSql), '1|eu|7|210', 'a truncate refills the target through the filter');

  const validated = await cli(['--config', job.configPath, 'validate']);
  t.equal(validated.code, 0, `validate finds the shaped table as it should be (${validated.stdout}${validated.stderr})`);
  await sql(b, 'ALTER TABLE archive.orders_copy DROP COLUMN total30');
  const broken = await cli(['--config', job.configPath, 'validate']);
  t.match(
    broken.stdout + broken.stderr,
    /public\.orders.*lacks column total30 \(shape: -> archive\.orders_copy, columns \(id, region, total\), total30 = \(?total \* 30\)?, where/,
    'validate names the shape',
  );
  const status = await cli(['--config', job.configPath, 'status']);
  t.match(
    status.stdout,
    / {2}table public\.orders: -> archive\.orders_copy, columns \(id, region, total\), total30 = total \* 30, where region = 'eu'\n/,
    'status names the shape',
  );
});

t.test('source and target in one database: another table of the same database', async (t) => {
  const url = await freshDb(t, c1!, 'same');
  await sql(url, schema);
  const job = await makeJob(t, {
    nodes: { a: url, b: url },
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.orders]${shaped}`,
  });
  await sql(url, `INSERT INTO orders VALUES (1, 'eu', 1, 's'), (2, 'us', 2, 's')`);
  await setUp(job);
  startDaemon(t, job);
  await sql(url, `INSERT INTO orders VALUES (3, 'eu', 3, 's')`);
  await sql(url, `UPDATE orders SET total = 10 WHERE id = 1`);
  await waitShaped(job, 'a', 'b');
  t.equal(await one(url, actualSql), '1|eu|10|300\n3|eu|3|90', 'the copy in the same database follows the source table');
});

t.test('bad options are refused at add-triggers, every problem at once, each naming its table', async (t) => {
  const yaml = `syncs:
  s:
    sources: [a]
    targets: [b]
    tables:
      include: [public.orders, public.other]
      options:
        public.orders:
          columns: [region, total, nosuch]
          where: "region IN (SELECT region FROM other)"
        public.other:
          target: archive.orders_copy
          where: "orders.region = 'eu'"
          expressions: { region: "random()::text" }`;
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml });
  let message = '';
  await setUp(job).catch((err: Error) => void (message = err.message));
  t.notMatch(message, /\n/, 'one line');
  t.match(message, /table public\.orders on a: tables\.options columns: no column "nosuch"/, 'unknown column');
  t.match(message, /table public\.orders on a: tables\.options columns: the key column "id" must be among/, 'key outside the column list');
  t.match(message, /table public\.orders on a: tables\.options where .*subquery/, 'a subquery');
  t.match(message, /table public\.other on a: tables\.options where .*missing FROM-clause entry for table "orders"/, "another table's column");
  t.match(message, /table public\.other on a: tables\.options expressions\.region .*volatile/, 'a volatile expression');
  t.same(await sql(job.urls.a!, `SELECT tgname FROM pg_trigger WHERE tgname LIKE 'capra%'`), [], 'nothing was set up');

  const notBool = await makeJob(t, {
    nodes: { a: job.urls.a!, b: job.urls.b! },
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.orders]\n      options:\n        orders: { where: "total + 1", target: archive.nosuch }`,
  });
  await t.rejects(
    setUp(notBool),
    /table public\.orders on a: tables\.options where "total \+ 1": argument of a row filter must be type boolean/,
    'not a condition',
  );
  const noTarget = await makeJob(t, {
    nodes: { a: job.urls.a!, b: job.urls.b! },
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.orders]\n      options:\n        orders: { target: archive.nosuch }`,
  });
  await t.rejects(setUp(noTarget), /^table public\.orders does not exist as archive\.nosuch on b/, 'a target table that does not exist');
  const injected = await makeJob(t, {
    nodes: { a: job.urls.a!, b: job.urls.b! },
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.orders]\n      options:\n        orders: { where: "true); DROP TABLE other; --" }`,
  });
  await t.rejects(setUp(injected), /tables\.options where/, 'a second statement is refused');
  t.equal((await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'other'`))[0]!.n, 1, 'and did not run');
});

t.test('the config refuses options in a multi-master sync and bad option forms, naming the key', async (t) => {
  const base = 'name: j\ndatabases:\n  a: postgres://x/a\n  b: postgres://x/b\nsyncs:\n  s:\n';
  const parse = (s: string): void => void parseConfigText(base + s, '/tmp/capra.yml');
  t.throws(
    () => parse('    sources: [a, b]\n    tables:\n      options:\n        public.t: { expressions: { v: "v * 2" } }'),
    /syncs\.s\.tables\.options\.public\.t: per-table options .* need a one-way sync/,
  );
  t.throws(
    () => parse('    sources: [a]\n    targets: [b]\n    tables:\n      options:\n        public.t: { identity: half }'),
    /tables\.options\.public\.t\.identity: expected one of key, full/,
  );
  t.throws(
    () => parse('    sources: [a]\n    targets: [b]\n    tables:\n      options:\n        public.t: { fullcopy: "every day" }'),
    /fullcopy: not a valid cron expression/,
  );
  t.throws(
    () => parse('    sources: [a]\n    targets: [b]\n    tables:\n      options:\n        public.t: { colums: [a] }'),
    /tables\.options\.public\.t\.colums: unknown key/,
  );
  t.throws(
    () => parse('    sources: [a]\n    targets: [b]\n    tables:\n      options:\n        a.b.c: {}'),
    /tables\.options\.a\.b\.c: expected table or schema\.table/,
  );
});
