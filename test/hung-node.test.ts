// A node that hangs instead of going down, in one-way syncs: its server
// frozen with SIGSTOP (postmaster and every backend), so connections are
// accepted by its kernel and then nothing answers. Every wait on it must end
// within the node timeout (3 s here), the other target must go on without it,
// status must say so quickly, and it must catch up once it answers again.
// Also: capra status --max-lag.
import t, { type Test } from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type OwnCluster, ownCluster, sql, testClusters, waitFor } from './harness/db.js';
import { type Job, applyingInto, cli, makeJob, setUp, waitSame } from './harness/capra.js';
import { TIMEOUT_S, count, daemonFor, isOk, laneRecordedHung, recordingLogger, statusFailsFor, timedStatus } from './harness/hung.js';

const [c1, c2] = testClusters().clusters;

async function oneWayJob(t: Test, own: OwnCluster, table: string, copyData = 'empty'): Promise<Job> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, d: own.info },
    schema: `CREATE TABLE ${table} (id int PRIMARY KEY, v text)`,
    yaml: `node_timeout_seconds: ${TIMEOUT_S}\nsyncs:\n  s:\n    sources: [a]\n    targets: [b, d]\n    copy_data: ${copyData}`,
  });
  await setUp(job);
  return job;
}

t.test('one-way: a frozen target fails its lane within the timeout; the other target keeps receiving; it catches up', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await oneWayJob(t, own, 'x');
  const { logger, lines } = recordingLogger();
  daemonFor(t, job, logger);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'before' FROM generate_series(1, 100) g`);
  await waitSame(job, 'x', ['a', 'b', 'd']);

  own.freeze(t);
  const frozenAt = Date.now();
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'while d hangs' FROM generate_series(101, 200) g`);
  await sql(job.urls.a!, `UPDATE x SET v = 'updated while d hangs' WHERE id <= 50`);
  // Status is asked all along, from the freeze on.
  await Promise.all([
    waitSame(job, 'x', ['a', 'b']).then(() => t.pass(`b kept receiving: equal to a ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after the freeze`)),
    statusFailsFor(t, job, 'd', frozenAt),
  ]);
  await laneRecordedHung(job, 'a', 'd', 'd');
  t.pass(`the daemon recorded a -> d failing ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after the freeze`);
  const st = await timedStatus(t, job);
  t.match(
    st.syncs[0]!.lanes.find((l) => l.target === 'b'),
    { state: 'ok', error: null },
    'the lane to b is ok',
  );
  t.same(
    st.unanswered.map((u) => u.node),
    ['d'],
    'status says which node did not answer',
  );
  const byCli = await cli(['--config', job.configPath, 'status'], { timeoutMs: 20_000 });
  t.equal(byCli.code, 1, 'capra status exits 1');
  t.match(byCli.stdout, /a -> d: (failing|unreachable)[^\n]*\n\s+error[^\n]*d[^\n]*no answer/, 'capra status names d and says it does not answer');
  t.match(byCli.stdout, /no answer from: d/, 'and lists it among the nodes that did not answer');
  t.ok(
    lines.some((l) => l === 'node not answering d'),
    'the daemon warned that d stopped answering',
  );

  own.thaw();
  const thawedAt = Date.now();
  await waitSame(job, 'x', ['a', 'd']);
  t.pass(`d caught up ${((Date.now() - thawedAt) / 1000).toFixed(1)} s after it was thawed, without a restart`);
  t.equal(await count(job.urls.d!, 'x'), 200, 'd has every row');
  await waitFor(async () => isOk(await timedStatus(t, job)), { what: 'status to show the sync ok again' });
  t.pass('status shows the sync ok again, every node answering');
  await waitFor(async () => lines.includes('node answering again d'), { what: 'the daemon to log that d answers again' });
  t.pass('the daemon logged that d answers again');
});

t.test('one-way: a target frozen in the middle of a large batch COPY', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await oneWayJob(t, own, 'big', 'never');
  daemonFor(t, job);
  const rows = 300_000;
  await sql(job.urls.a!, `INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, ${rows}) g`);
  await waitFor(() => applyingInto(job.urls.d!, 'big'), { what: 'the COPY into big on d', intervalMs: 10 });
  own.freeze(t);
  const frozenAt = Date.now();
  await waitSame(job, 'big', ['a', 'b'], { timeoutMs: 120_000 });
  t.pass(`b got the whole batch ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after d froze`);
  await laneRecordedHung(job, 'a', 'd', 'd');
  t.pass(`the run into d was given up and recorded ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after the freeze`);
  own.thaw();
  await waitSame(job, 'big', ['a', 'd'], { timeoutMs: 120_000 });
  t.equal(await count(job.urls.d!, 'big'), rows, 'd has every row of the batch once thawed, without a restart');
});

t.test('capra status --max-lag fails on lag alone', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    // Polled once an hour, never kicked: a change waits, and its lag grows, with nothing failing.
    yaml: `poll_seconds: 3600\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    kick: "0 0 1 1 *"`,
  });
  await setUp(job);
  const daemon = await cli(['--config', job.configPath, 'start']);
  t.equal(daemon.code, 0, 'capra start');
  t.teardown(() => cli(['--config', job.configPath, 'stop']));
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes[0]!.state === 'ok', { what: 'the first run' });
  await sql(job.urls.a!, 'INSERT INTO x VALUES (1)');
  await waitFor(async () => ((await collectStatus(job.cfg, silentLogger)).syncs[0]!.lagSeconds ?? 0) > 1.5, { what: 'the lag to pass 1.5 s' });
  const plain = await cli(['--config', job.configPath, 'status']);
  t.equal(plain.code, 0, `without --max-lag the job is healthy${plain.code ? `: ${plain.stdout}` : ''}`);
  const lagging = await cli(['--config', job.configPath, 'status', '--max-lag', '1']);
  t.equal(lagging.code, 1, 'with --max-lag 1 it is not');
  t.match(lagging.stdout, /a -> b: lag [\d.]+ s is above --max-lag 1/, 'and says which lane lags');
  const json = JSON.parse((await cli(['--config', job.configPath, 'status', '--json', '--max-lag', '3600'])).stdout) as { healthy: boolean };
  t.equal(json.healthy, true, 'a lag below --max-lag is healthy');
  const bad = await cli(['--config', job.configPath, 'status', '--max-lag', 'soon']);
  t.equal(bad.code, 2, 'a bad --max-lag is refused');
  t.match(bad.stderr, /^capra: option --max-lag: expected a number of seconds, got "soon"\n$/, 'with one line naming it');
});
