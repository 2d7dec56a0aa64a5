// Notify kicks are rate-limited per table (at most one per 100 ms for all
// sessions together); the daemon's linger after each kick must still pick up
// every commit. The safety-net poll is set to an hour, so nothing else would.
import t from 'tap';
import { sql, testClusters, waitFor, withClient } from './harness/db.js';
import { type Job, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

/** A one-way job a -> b over table x, kicked only by notify (the safety poll once an hour), its daemon running. */
async function runningJob(t: Parameters<typeof makeJob>[0]): Promise<Job> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    yaml: 'poll_seconds: 3600\nsyncs:\n  s: { sources: [a], targets: [b] }',
  });
  await setUp(job);
  startDaemon(t, job);
  return job;
}

t.test('a burst of commits from one session all arrive without the safety poll', async (t) => {
  const job = await runningJob(t);
  for (let round = 0; round < 3; round++) {
    await withClient(job.urls.a!, async (c) => {
      for (let i = 1; i <= 30; i++) await c.query('INSERT INTO x VALUES ($1)', [round * 100 + i]);
    });
    await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 20_000 });
  }
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 90, 'all 90 commits arrived');
});

t.test('commits from many sessions at once all arrive without the safety poll', async (t) => {
  const job = await runningJob(t);
  // Eight sessions writing at once share the table's one kick per 100 ms.
  await Promise.all(
    Array.from({ length: 8 }, (_, s) =>
      withClient(job.urls.a!, async (c) => {
        for (let i = 1; i <= 40; i++) await c.query('INSERT INTO x VALUES ($1)', [s * 1000 + i]);
      }),
    ),
  );
  await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 20_000 });
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 320, 'all 320 commits arrived');
});

t.test('one session writing two tables of two jobs within 100 ms kicks both jobs', async (t) => {
  const schema = 'CREATE TABLE x (id int PRIMARY KEY); CREATE TABLE y (id int PRIMARY KEY)';
  const one = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'poll_seconds: 3600\nsyncs:\n  s: { sources: [a], targets: [b], tables: { include: [public.x] } }',
  });
  const two = await makeJob(t, {
    nodes: { a: one.urls.a!, c: c2! },
    schema,
    yaml: 'poll_seconds: 3600\nsyncs:\n  s: { sources: [a], targets: [c], tables: { include: [public.y] } }',
  });
  for (const job of [one, two]) {
    await setUp(job);
    startDaemon(t, job);
  }
  for (let round = 1; round <= 3; round++) {
    await withClient(one.urls.a!, async (c) => {
      await c.query('INSERT INTO x VALUES ($1)', [round]);
      await c.query('INSERT INTO y VALUES ($1)', [round]);
    });
    await waitSame(one, 'x', ['a', 'b'], { timeoutMs: 20_000 });
    await waitSame(two, 'y', ['a', 'c'], { timeoutMs: 20_000 });
  }
  t.same(
    [(await sql(one.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, (await sql(two.urls.c!, 'SELECT count(*)::int AS n FROM y'))[0]!.n],
    [3, 3],
    'each job got its table (kicks are limited per table, not per session)',
  );
});

t.test("a user's write right after a cascaded apply is kicked for the job that reads that node", async (t) => {
  // One job: a -> b cascading, and b -> c. The applier's write on b kicks only other jobs (there are
  // none); the user's write on b that follows within 100 ms must still kick this job's b -> c lane.
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c1! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: [
      'poll_seconds: 3600',
      'syncs:',
      '  ab: { sources: [a], targets: [b], cascade: true }',
      '  bc: { sources: [b], targets: [c], copy_data: never }',
    ].join('\n'),
  });
  await setUp(job);
  startDaemon(t, job);
  const arrived: number[] = [];
  for (let round = 1; round <= 5; round++) {
    await sql(job.urls.a!, 'INSERT INTO x VALUES ($1, $2)', [round, 'from a']);
    // Write on b the moment the applier's row is there: well within the 100 ms of its kick.
    await withClient(job.urls.b!, async (c) => {
      await waitFor(async () => (await c.query('SELECT 1 FROM x WHERE id = $1', [round])).rows.length > 0, { what: `row ${round} on b`, intervalMs: 2 });
      await c.query('INSERT INTO x VALUES ($1, $2)', [1000 + round, 'from b']);
    });
    const wrote = Date.now();
    await waitFor(async () => (await sql(job.urls.c!, 'SELECT 1 FROM x WHERE id = $1', [1000 + round])).length > 0, {
      what: `b's row ${1000 + round} on c (the safety poll is an hour away)`,
      timeoutMs: 10_000,
      intervalMs: 10,
    });
    arrived.push(Date.now() - wrote);
  }
  t.pass(`each of b's writes reached c without the safety poll (ms after the write: ${arrived.join(', ')})`);
});
