// High availability: two daemons of one job, one active (holding the job
// lock in the metadata database), one standing by; kill -9 the active one
// and the standby takes over. And the fence: two runs of one lane at once
// never apply a batch twice.
import path from 'node:path';
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { JOB_LOCK_CLASS } from '../orchestrator/src/db/advisory-locks.js';
import { runLane } from '../orchestrator/src/sync/lane.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { type Job, makeJob, setUp, spawnCli, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;
const yaml = 'syncs:\n  s:\n    sources: [a]\n    targets: [b]';

/** The pid of the daemon holding the job lock, from the lock holder's application_name. */
async function activePid(job: Job): Promise<number | null> {
  const rows = await sql<{ app: string }>(
    job.cfg.metadata,
    `SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2`,
    [JOB_LOCK_CLASS, job.name],
  );
  const m = /^capra-active (\d+)@/.exec(rows[0]?.app ?? '');
  return m ? Number(m[1]) : null;
}

t.test('the standby takes over when the active daemon is killed', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)', yaml });
  await setUp(job);
  // Each daemon its own run dir: on one host they would otherwise share the pidfile.
  const d1 = spawnCli(t, job, ['start', '--foreground'], { CAPRA_RUN_DIR: path.join(job.dir, 'run1') }).child;
  const d2 = spawnCli(t, job, ['start', '--foreground'], { CAPRA_RUN_DIR: path.join(job.dir, 'run2') }).child;
  await waitFor(async () => (await activePid(job)) !== null, { what: 'one daemon to become active' });
  const first = (await activePid(job))!;
  t.ok([d1.pid, d2.pid].includes(first), 'one of the two daemons holds the job lock');
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'first' FROM generate_series(1, 100) g`);
  await waitSame(job, 'x', ['a', 'b']);

  const [active, standby] = first === d1.pid ? [d1, d2] : [d2, d1];
  const exited = new Promise((r) => active.once('exit', r));
  const killedAt = Date.now();
  active.kill('SIGKILL');
  await exited;
  await waitFor(async () => (await activePid(job)) === standby.pid, { what: 'the standby to take the lock', intervalMs: 20 });
  const takeoverMs = Date.now() - killedAt;
  t.comment(`takeover after kill -9: ${takeoverMs} ms`);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'after takeover' FROM generate_series(101, 200) g`);
  await sql(job.urls.a!, `UPDATE x SET v = 'updated' WHERE id <= 10`);
  await waitSame(job, 'x', ['a', 'b']);
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 200, 'the new active daemon replicates');
  const st = await collectStatus(job.cfg, silentLogger);
  t.match(st.daemon.activeHolder, new RegExp(`^${standby.pid}@`), 'status names the new active daemon');
});

t.test('two runs of one lane at once: one applies the batch, the other is fenced off', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)', yaml });
  await setUp(job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'v' FROM generate_series(1, 50000) g`);
  const connsA = new Connections(job.cfg, 'capra-sync', silentLogger);
  const connsB = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(async () => {
    await connsA.close();
    await connsB.close();
  });
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const results = await Promise.allSettled([runLane(connsA, key, 100_000, {}), runLane(connsB, key, 100_000, {})]);
  const applied = results.filter((r) => r.status === 'fulfilled' && r.value.deltas > 0);
  const fenced = results.filter((r) => r.status === 'rejected' || r.value.deltas === 0);
  t.equal(applied.length, 1, 'exactly one run applied the batch');
  t.equal(fenced.length, 1, 'the other applied nothing');
  const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
  if (rejected) t.match(String(rejected.reason), /another run applied a's changes to b meanwhile/, 'and says why');
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 50000);
  const again = await runLane(connsA, key, 100_000, {});
  t.equal(again.deltas, 0, 'the position covers the batch: nothing left to apply');
});
