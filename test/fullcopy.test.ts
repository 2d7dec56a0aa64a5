// fullcopy (tables.options): a keyless, churned table is not captured but
// copied whole on a cron schedule through the clone queue, in its shape
// (here a renamed target and a row filter), one transaction per target, with
// its progress recorded as any clone's; a copy already queued is not queued twice.
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { queueFullcopy } from '../orchestrator/src/daemon/fullcopy.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { makeJob, setUp, startDaemon } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const schema = `
  CREATE TABLE churn (k text, v int);
  CREATE TABLE churn_copy (k text, v int);
  CREATE TABLE items (id int PRIMARY KEY, v text);
`;

t.test('a fullcopy table is copied whole on its schedule, in its shape, and not captured', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema,
    yaml: `syncs:
  s:
    sources: [a]
    targets: [b, c]
    tables:
      include: [public.churn, public.items]
      options:
        public.churn: { fullcopy: "*/1 * * * * *", target: churn_copy, where: "v >= 0" }`,
  });
  const a = job.urls.a!;
  await sql(a, `INSERT INTO churn SELECT 'k' || (g % 10), g FROM generate_series(-5, 100) g`);
  await setUp(job);
  t.same(
    await sql(a, `SELECT DISTINCT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname LIKE 'capra%'`),
    [{ t: 'items' }],
    'only the keyed table is captured',
  );
  startDaemon(t, job, { cloneCheckMs: 200 });
  const want = async (): Promise<string> =>
    (await sql<{ d: string }>(a, `SELECT string_agg(k || ':' || v, ',' ORDER BY k, v) AS d FROM churn WHERE v >= 0`))[0]!.d;
  const have = async (n: string): Promise<string> =>
    (await sql<{ d: string | null }>(job.urls[n]!, `SELECT string_agg(k || ':' || v, ',' ORDER BY k, v) AS d FROM churn_copy`))[0]!.d ?? '';
  for (const n of ['b', 'c']) await waitFor(async () => (await have(n)) === (await want()), { what: `the copy on ${n}` });

  await sql(a, `UPDATE churn SET v = v + 1000 WHERE k = 'k1'`);
  await sql(a, `DELETE FROM churn WHERE k = 'k2'`);
  await sql(a, `INSERT INTO churn VALUES ('new', 1), ('new', 1), ('neg', -1)`);
  for (const n of ['b', 'c']) await waitFor(async () => (await have(n)) === (await want()), { what: `the next copy on ${n}` });
  t.equal((await sql(job.urls.b!, `SELECT count(*)::int AS n FROM churn_copy WHERE k = 'new'`))[0]!.n, 2, 'duplicates copied as they are');
  t.equal((await sql(job.urls.b!, `SELECT count(*)::int AS n FROM churn`))[0]!.n, 0, 'nothing under the source name');

  const meta = job.cfg.metadata;
  const done = await sql<{ n: number }>(
    meta,
    `SELECT count(*)::int AS n FROM repl.clone c JOIN repl.clone_table ct ON ct.clone_id = c.id
      WHERE c.sync = 's' AND ct.table_name = 'churn' AND ct.state = 'done' AND ct.rows > 0`,
  );
  t.ok(done[0]!.n >= 2, 'each copy is a clone with its progress recorded per target');
});

t.test('a fullcopy already queued is not queued again', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.churn]\n      options:\n        churn: { fullcopy: "0 0 1 1 *" }',
  });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const first = await conns.with(Connections.META, (c) => queueFullcopy(c, 's', { schema: 'public', table: 'churn' }));
  t.type(first, 'number', 'queued');
  t.equal(await conns.with(Connections.META, (c) => queueFullcopy(c, 's', { schema: 'public', table: 'churn' })), null, 'not twice');
});
