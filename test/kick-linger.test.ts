// Notify kicks are rate-limited per session (at most one per 100 ms); the
// daemon's linger after each kick must still pick up every commit. The
// safety-net poll is set to an hour, so nothing else would.
import t from 'tap';
import { sql, testClusters, withClient } from './harness/db.js';
import { makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

t.test('a burst of commits from one session all arrive without the safety poll', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    yaml: 'poll_seconds: 3600\nsyncs:\n  s: { sources: [a], targets: [b] }',
  });
  await setUp(job);
  startDaemon(t, job);
  for (let round = 0; round < 3; round++) {
    await withClient(job.urls.a!, async (c) => {
      for (let i = 1; i <= 30; i++) await c.query('INSERT INTO x VALUES ($1)', [round * 100 + i]);
    });
    await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 20_000 });
  }
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 90, 'all 90 commits arrived');
});
