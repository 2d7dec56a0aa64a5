// A sync kicked by cron alone: notify off, so the daemon does not LISTEN for
// it, and the safety-net poll an hour away, so nothing but the six-field cron
// schedule (every second) wakes its lane.
import t from 'tap';
import { makeJob, setUp, startDaemon } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2] = testClusters().clusters;

t.test('a cron-kicked sync with notify off replicates with no NOTIFY at all', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: 'poll_seconds: 3600\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    kick: { notify: false, cron: "* * * * * *" }\n',
  });
  t.same(job.cfg.syncs.s!.kick, { notify: false, cron: '* * * * * *' }, 'control: notify is off, the cron every second');
  await setUp(job);
  startDaemon(t, job);
  // Each write after the one before it has arrived: the schedule keeps waking the lane, not only at start.
  for (const id of [1, 2, 3]) {
    await sql(job.urls.a!, 'INSERT INTO x VALUES ($1, $2)', [id, `v${id}`]);
    await waitFor(async () => (await sql(job.urls.b!, 'SELECT 1 FROM x WHERE id = $1', [id])).length === 1, {
      what: `row ${id} on b (no notify; the poll is an hour away)`,
      timeoutMs: 15_000,
    });
  }
  // A kick listener's session shows its LISTEN as its last statement (its heartbeat comes once per node timeout, 30 s).
  t.same(
    await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`),
    [{ n: 0 }],
    'no session LISTENs on a',
  );
  t.same(await sql(job.urls.b!, 'SELECT id, v FROM x ORDER BY id'), [
    { id: 1, v: 'v1' },
    { id: 2, v: 'v2' },
    { id: 3, v: 'v3' },
  ]);
});
