// Faults: the daemon killed with SIGKILL in the middle of applying a large
// batch, and a target server that is down for a while.
import type { ChildProcess } from 'node:child_process';
import t from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { ownCluster, sql, testClusters, waitFor } from './harness/db.js';
import { applyingInto, digest, makeJob, setUp, spawnCli, startDaemon, waitSame } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

const count = async (url: string, table: string): Promise<number> => (await sql(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

t.test('SIGKILL while applying one large transaction: target unchanged, then identical after restart', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE big (id int PRIMARY KEY, payload text)',
    // The rows exist before the first start: copy_data would clone them; this test is about the lane.
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never',
  });
  await setUp(job);
  const rows = 400_000;
  await sql(job.urls.a!, `INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, ${rows}) g`);
  const daemon = spawnCli(t, job, ['start', '--foreground']).child;
  await waitFor(() => applyingInto(job.urls.b!, 'big'), { what: 'the COPY into big on b', intervalMs: 10 });
  await kill9(daemon);
  // The server notices the dead client and rolls the transaction back.
  await waitFor(async () => !(await applyingInto(job.urls.b!, 'big')), { what: 'the aborted COPY to end' });
  t.equal(await count(job.urls.b!, 'big'), 0, 'nothing of the half-applied batch is visible');
  t.same(await sql(job.urls.b!, 'SELECT * FROM repl.applied'), [], 'no position was stored');
  startDaemon(t, job);
  await waitSame(job, 'big', ['a', 'b'], { timeoutMs: 120_000 });
  t.equal(await count(job.urls.b!, 'big'), rows);
});

t.test('SIGKILL in the middle of a multi-batch backlog: nothing lost, nothing applied twice', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE log (id int PRIMARY KEY, tx int, n int DEFAULT 0)',
    yaml: 'batch_rows: 20000\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never',
  });
  await setUp(job);
  // 40 transactions of 5,000 inserts, then updates of every row in 20 more.
  for (let tx = 0; tx < 40; tx++) await sql(job.urls.a!, `INSERT INTO log SELECT g, ${tx} FROM generate_series(${tx * 5000 + 1}, ${(tx + 1) * 5000}) g`);
  for (let tx = 0; tx < 20; tx++) await sql(job.urls.a!, `UPDATE log SET n = n + 1 WHERE id % 20 = ${tx}`);
  const daemon = spawnCli(t, job, ['start', '--foreground']).child;
  await waitFor(async () => (await count(job.urls.b!, 'log')) > 0 && (await applyingInto(job.urls.b!, 'log')), {
    what: 'some batches applied and another one in progress',
    intervalMs: 10,
  });
  await kill9(daemon);
  await waitFor(async () => !(await applyingInto(job.urls.b!, 'log')), { what: 'the aborted COPY to end' });
  const partial = await sql<{ tx: number; n: number }>(job.urls.b!, 'SELECT tx, count(*)::int AS n FROM log GROUP BY tx');
  t.ok(
    partial.length < 40 || partial.some((p) => p.n < 5000) || (await digest(job.urls.b!, 'log')) !== (await digest(job.urls.a!, 'log')),
    'killed before the end',
  );
  t.ok(
    partial.every((p) => p.n === 5000),
    'only whole source transactions are on the target',
  );
  startDaemon(t, job);
  await waitSame(job, 'log', ['a', 'b'], { timeoutMs: 120_000 });
  t.equal(await count(job.urls.b!, 'log'), 200_000);
});

t.test('a target that is down catches up by itself; the other target keeps receiving', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c3!, d: own.info },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, d]',
  });
  await setUp(job);
  startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'before' FROM generate_series(1, 100) g`);
  await waitSame(job, 'x', ['a', 'b', 'd']);

  await own.stop();
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'while d is down' FROM generate_series(101, 200) g`);
  await sql(job.urls.a!, `UPDATE x SET v = 'updated while d is down' WHERE id <= 50`);
  await waitSame(job, 'x', ['a', 'b']);
  t.pass('b kept receiving while d was down');
  await waitFor(
    async () => {
      const st = await collectStatus(job.cfg, silentLogger);
      const lane = st.syncs[0]!.lanes.find((l) => l.target === 'd')!;
      return st.syncs[0]!.state === 'failing' && (lane.state === 'failing' || lane.state === 'unreachable') && lane.error !== null;
    },
    { what: 'status to report the lane to d as failing' },
  );
  t.pass('status reports the lane to d as failing');

  await own.start();
  await waitSame(job, 'x', ['a', 'd']);
  t.equal(await count(job.urls.d!, 'x'), 200, 'd caught up without a daemon restart');
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.state === 'ok', { what: 'status to show the sync ok again' });
  t.pass('status is ok again');
});

t.test('multi-master: a source that is down is left out, the others go on, and it catches up both ways when back', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, d: own.info },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: 'syncs:\n  s:\n    sources: [a, b, d]\n    conflict: latest',
  });
  await setUp(job);
  const first = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'before' FROM generate_series(1, 100) g`);
  await waitSame(job, 'x', ['a', 'b', 'd']);
  // The rows may have reached b and d by their initial copy (copy_data) before any run stored positions:
  // wait for the run, or the insert would be applied again later, and seen as a conflict with d's change.
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.pendingRows === 0, { what: 'every position to cover the insert' });
  await first.stop();

  // d changes rows, then goes down before any daemon saw them.
  await sql(job.urls.d!, `UPDATE x SET v = 'd, before it went down' WHERE id <= 10`);
  await own.stop();
  startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a, while d is down' FROM generate_series(101, 150) g`);
  await sql(job.urls.b!, `UPDATE x SET v = 'b, while d is down' WHERE id > 90 AND id <= 100`);
  await waitSame(job, 'x', ['a', 'b']);
  t.equal(await count(job.urls.b!, 'x'), 150, 'a and b kept replicating between themselves while d was down');
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.state === 'failing', { what: 'status to show the sync failing' });
  const lanes = (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes;
  for (const l of lanes) {
    const touchesD = l.source === 'd' || l.target === 'd';
    t.match(
      l,
      touchesD ? { state: /^(failing|unreachable)$/, error: /^cannot connect to database d / } : { state: 'ok', error: null },
      `status: ${l.source} -> ${l.target}`,
    );
  }

  await own.start();
  await waitSame(job, 'x', ['a', 'b', 'd']);
  t.equal(await count(job.urls.d!, 'x'), 150, 'd caught up without a daemon restart');
  t.same(await sql(job.urls.a!, `SELECT count(*)::int AS n FROM x WHERE v = 'd, before it went down'`), [{ n: 10 }], "d's own changes reached a and b");
  t.same(await sql(job.urls.d!, `SELECT count(*)::int AS n FROM x WHERE v = 'b, while d is down'`), [{ n: 10 }], "b's changes reached d");
  t.same(await sql(job.cfg.metadata, 'SELECT count(*)::int AS n FROM repl.conflict'), [{ n: 0 }], 'nothing was settled twice: no conflict');
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.state === 'ok', { what: 'status to show the sync ok again' });
  t.same(
    (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes.filter((l) => l.error !== null),
    [],
    'status is ok again: no lane reports an error',
  );
});
