// A node that hangs instead of going down, in a multi-master sync of three
// sources: the frozen one (SIGSTOP on its postmaster and every backend) is
// left out within the node timeout, also when it froze in the middle of a
// run; the other two replicate both ways; a daemon stops and starts while it
// hangs; thawed, it catches up both ways with nothing lost, nothing doubled
// and no spurious conflict.
import t from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { ownCluster, sql, testClusters, waitFor } from './harness/db.js';
import { applyingInto, makeJob, setUp, waitSame } from './harness/capra.js';
import { TIMEOUT_S, count, daemonFor, isOk, recordingLogger, statusFailsFor, timedStatus } from './harness/hung.js';

const [c1, , c3] = testClusters().clusters;

t.test('multi-master: a frozen source is left out, the others replicate both ways, and it catches up both ways when thawed', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c3!, d: own.info },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: `node_timeout_seconds: ${TIMEOUT_S}\nsyncs:\n  s:\n    sources: [a, b, d]\n    conflict: latest`,
  });
  await setUp(job);
  const { logger, lines } = recordingLogger();
  const first = daemonFor(t, job, logger);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'before' FROM generate_series(1, 100) g`);
  await waitSame(job, 'x', ['a', 'b', 'd']);
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.pendingRows === 0, { what: 'every position to cover the insert' });

  // d hangs in the middle of a run: a large batch is being applied to it.
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'big, from a' FROM generate_series(1001, 101000) g`);
  await waitFor(() => applyingInto(job.urls.d!, 'x'), { what: 'a COPY into x on d', intervalMs: 10 });
  own.freeze(t);
  let frozenAt = Date.now();
  await sql(job.urls.b!, `UPDATE x SET v = 'b, while d hangs' WHERE id > 90 AND id <= 100`);
  // Status is asked all along, from the freeze on.
  await Promise.all([
    waitSame(job, 'x', ['a', 'b'], { timeoutMs: 120_000 }).then(() =>
      t.pass(`a and b replicated both ways without d: equal ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after d froze in a run`),
    ),
    statusFailsFor(t, job, 'd', frozenAt),
  ]);
  t.same(await sql(job.urls.a!, `SELECT count(*)::int AS n FROM x WHERE v = 'b, while d hangs'`), [{ n: 10 }], "b's write reached a");
  for (const l of (await timedStatus(t, job)).syncs[0]!.lanes) {
    if (l.source !== 'd' && l.target !== 'd') t.match(l, { state: 'ok', error: null }, `status: ${l.source} -> ${l.target} is ok`);
  }
  t.ok(
    lines.some((l) => l === 'node not answering d'),
    'the daemon warned that d stopped answering',
  );

  // A daemon that stops while d hangs stops within the timeout; d gets a change of its own, hangs
  // again, and a new daemon starts with d hanging from the outset.
  const stopping = Date.now();
  await first.stop();
  t.pass(`the daemon stopped ${((Date.now() - stopping) / 1000).toFixed(1)} s after it was asked, with d frozen`);
  own.thaw();
  await sql(job.urls.d!, `UPDATE x SET v = 'd, before it hung again' WHERE id <= 10`);
  own.freeze(t);
  frozenAt = Date.now();
  daemonFor(t, job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a, while d hangs' FROM generate_series(201, 250) g`);
  await sql(job.urls.b!, `UPDATE x SET v = 'b, again while d hangs' WHERE id > 80 AND id <= 90`);
  await Promise.all([
    waitSame(job, 'x', ['a', 'b'], { timeoutMs: 120_000 }).then(() =>
      t.pass(`a new daemon replicated a and b without d: equal ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after d froze`),
    ),
    statusFailsFor(t, job, 'd', frozenAt),
  ]);

  own.thaw();
  const thawedAt = Date.now();
  await waitSame(job, 'x', ['a', 'b', 'd'], { timeoutMs: 120_000 });
  t.pass(`d caught up both ways ${((Date.now() - thawedAt) / 1000).toFixed(1)} s after it was thawed, without a restart`);
  t.equal(await count(job.urls.d!, 'x'), 100 + 100_000 + 50, 'every row is on d, once');
  t.same(await sql(job.urls.a!, `SELECT count(*)::int AS n FROM x WHERE v = 'd, before it hung again'`), [{ n: 10 }], "d's own change reached a");
  t.same(await sql(job.urls.b!, `SELECT count(*)::int AS n FROM x WHERE v = 'd, before it hung again'`), [{ n: 10 }], "d's own change reached b");
  t.same(await sql(job.urls.d!, `SELECT count(*)::int AS n FROM x WHERE v LIKE 'b, %while d hangs'`), [{ n: 20 }], "b's changes reached d");
  t.same(await sql(job.cfg.metadata, 'SELECT count(*)::int AS n FROM repl.conflict'), [{ n: 0 }], 'no spurious conflict was logged');
  await waitFor(async () => isOk(await timedStatus(t, job)), { what: 'status to show the sync ok again' });
  t.pass('status shows the sync ok again, every node answering');
});
