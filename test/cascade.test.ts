// Cascading (makedelta): A -> B and B -> C as two jobs with their own
// metadata databases. With cascade: true on the first, what it applies to B
// is captured there for the second, and nothing comes back to A. Removing
// either job (stop, uninstall) leaves the other one replicating with no
// manual step; the reference wrapper documents that removing B -> C breaks
// A -> B in Bucardo.
import t, { type Test } from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, cli, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;
const schema = 'CREATE TABLE items (id int PRIMARY KEY, v text)';

/** job1: a -> b over items, cascading or not; job2: b -> c over items. */
async function chain(t: Test, cascade: boolean): Promise<{ job1: Job; job2: Job }> {
  const job1 = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: `syncs:\n  s1:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }\n    cascade: ${cascade}`,
  });
  const job2 = await makeJob(t, {
    nodes: { b: job1.urls.b!, c: c3! },
    schema,
    // No initial copy: C gets what job2 replicates, nothing else, so each test knows what C must hold.
    yaml: 'syncs:\n  s2:\n    sources: [b]\n    targets: [c]\n    tables: { include: [public.items] }\n    copy_data: never',
  });
  await setUp(job1);
  await setUp(job2);
  return { job1, job2 };
}

const rows = async (url: string): Promise<string[]> => (await sql<{ r: string }>(url, "SELECT id || ':' || v AS r FROM items ORDER BY id")).map((x) => x.r);
const deltas = async (url: string): Promise<number> => (await sql(url, 'SELECT count(*)::int AS n FROM repl.delta'))[0]!.n;

async function uninstall(t: Test, job: Job): Promise<void> {
  const r = await cli(['--config', job.configPath, 'uninstall']);
  t.equal(r.code, 0, `capra uninstall of ${job.name} exits 0${r.code ? `: ${r.stderr.trim()}` : ''}`);
}

async function healthy(t: Test, job: Job, what: string): Promise<void> {
  const st = await collectStatus(job.cfg, silentLogger);
  const errors = st.syncs.flatMap((s) => s.lanes.map((l) => l.error).filter((e) => e));
  t.same(errors, [], `${what}: no lane of ${job.name} reports an error`);
}

t.test('with cascade, changes applied to B reach C; nothing comes back to A', async (t) => {
  const { job1, job2 } = await chain(t, true);
  const { a, b } = job1.urls;
  const c = job2.urls.c!;
  startDaemon(t, job1);
  startDaemon(t, job2);
  await sql(a!, `INSERT INTO items VALUES (1, 'from a'), (2, 'from a')`);
  await sql(a!, `UPDATE items SET v = 'changed on a' WHERE id = 2`);
  await waitSame(job1, 'items', ['a', 'b']);
  await sql(b!, `INSERT INTO items VALUES (10, 'from b')`);
  await waitSame(job2, 'items', ['b', 'c']);
  t.same(await rows(c), ['1:from a', '2:changed on a', '10:from b'], "A's changes reached C through B, and B's own");
  t.same(await rows(a!), ['1:from a', '2:changed on a'], "B's own write did not go back to A (one-way)");
  t.equal(await deltas(a!), 3, "A's log holds its own three changes only: nothing applied elsewhere came back");
  const origins = await sql(b!, 'SELECT origin, count(*)::int AS n FROM repl.delta GROUP BY 1 ORDER BY 1');
  t.same(
    origins.map((o) => o.origin),
    [job1.name, null],
    "B's log: job1's applied changes (marked) and B's own",
  );
  await healthy(t, job1, 'chain running');
  await healthy(t, job2, 'chain running');
});

t.test('without cascade, what job1 applies to B stays there', async (t) => {
  const { job1, job2 } = await chain(t, false);
  const { a, b } = job1.urls;
  const c = job2.urls.c!;
  startDaemon(t, job1);
  startDaemon(t, job2);
  await sql(a!, `INSERT INTO items VALUES (1, 'from a')`);
  await waitSame(job1, 'items', ['a', 'b']);
  // A write on B after it: once that has reached C, job2 has seen everything B captured before.
  await sql(b!, `INSERT INTO items VALUES (10, 'from b')`);
  await waitFor(async () => (await rows(c)).includes('10:from b'), { what: `${job2.name} to copy B's write to C` });
  t.same(await rows(c), ['10:from b'], "only B's own write reached C");
});

t.test('removing B -> C leaves A -> B working with no manual step', async (t) => {
  const { job1, job2 } = await chain(t, true);
  const { a, b } = job1.urls;
  startDaemon(t, job1);
  const d2 = startDaemon(t, job2);
  await sql(a!, `INSERT INTO items VALUES (1, 'before')`);
  await waitFor(async () => (await rows(job2.urls.c!)).length === 1, { what: 'the row to reach C' });
  await d2.stop();
  await uninstall(t, job2);
  t.same(await sql(b!, `SELECT tgname FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal`), [], "job2's capture triggers on B are gone");
  // job1's daemon ran on throughout, cascading into B.
  await sql(a!, `INSERT INTO items VALUES (2, 'after'); UPDATE items SET v = 'after too' WHERE id = 1`);
  await waitSame(job1, 'items', ['a', 'b']);
  t.same(await rows(b!), ['1:after too', '2:after'], 'A -> B still replicates');
  t.equal(await deltas(b!), 0, 'and B logs nothing nobody would read');
  await healthy(t, job1, 'after B -> C was removed');
  t.same(await rows(job2.urls.c!), ['1:before'], 'C keeps what it had');
});

t.test('removing A -> B leaves B -> C working', async (t) => {
  const { job1, job2 } = await chain(t, true);
  const { a, b } = job1.urls;
  const c = job2.urls.c!;
  const d1 = startDaemon(t, job1);
  startDaemon(t, job2);
  await sql(a!, `INSERT INTO items VALUES (1, 'before')`);
  await waitFor(async () => (await rows(job2.urls.c!)).length === 1, { what: 'the row to reach C' });
  t.same(await rows(c), ['1:before']);
  await d1.stop();
  await uninstall(t, job1);
  await sql(b!, `INSERT INTO items VALUES (2, 'on b'); UPDATE items SET v = 'b again' WHERE id = 1`);
  await waitSame(job2, 'items', ['b', 'c']);
  t.same(await rows(c), ['1:b again', '2:on b'], 'B -> C still replicates');
  t.same(await sql(a!, `SELECT to_regnamespace('repl') IS NULL AS gone`), [{ gone: true }], "A, only job1's, lost its repl schema");
  await healthy(t, job2, 'after A -> B was removed');
});
