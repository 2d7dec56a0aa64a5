// Prometheus metrics: the text the daemon exposes (exact format, escaping,
// counters, omitted unknowns, forgotten lanes), the HTTP endpoint (paths,
// methods, a refresh that fails or hangs), and lanePending against real
// databases, driven through runLane without a daemon.
import net from 'node:net';
import t from 'tap';
import { register as globalRegistry } from 'prom-client';
import { Metrics } from '../orchestrator/src/daemon/metrics.js';
import { METRICS_CONTENT_TYPE, serveMetrics } from '../orchestrator/src/daemon/metrics-server.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { lanePending } from '../orchestrator/src/sync/lane-pending.js';
import { runLane } from '../orchestrator/src/sync/lane.js';
import { type Logger, silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters } from './harness/db.js';
import { makeJob, setUp } from './harness/capra.js';

interface Parsed {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of sample lines: every line is a comment or
 * `name{k="v",...} value`, label values may hold only the three escapes the
 * format defines. Throws on anything else, so a render that breaks the format
 * fails the test.
 */
function parse(text: string): Parsed[] {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const out: Parsed[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    if (/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} (\S+)$/.exec(line);
    if (!m) throw new Error(`not a valid exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k!] = v!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  const hits = parse(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} series match ${name} ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

function recordingLogger(): Logger & { lines: { level: string; obj: object | string; msg?: string }[] } {
  const lines: { level: string; obj: object | string; msg?: string }[] = [];
  const at =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push({ level, obj, msg });
    };
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

const ab = { sync: 's', source: 'a', target: 'b' };

t.test('render: exact text for a small scenario', async (t) => {
  const m = new Metrics('shop');
  // Reported out of order: the text is sorted by sync, source, target.
  m.runFinished(ab, { rows: 3 });
  m.runFinished(ab, { rows: 2, error: 'table x: boom' });
  m.setPending(ab, 5, 1.5);
  m.setPending({ sync: 'r', source: 'x', target: 'y' }, null, null);
  m.setConflicts('s', 0);
  m.setConflicts('r', 2);
  m.setActive(true);
  t.equal(
    await m.render(),
    [
      '# HELP capra_active 1 when this daemon holds the job lock and replicates, 0 in standby.',
      '# TYPE capra_active gauge',
      'capra_active{job="shop"} 1',
      '# HELP capra_lag_seconds Age in seconds of the oldest change on the source not yet applied on the target.',
      '# TYPE capra_lag_seconds gauge',
      'capra_lag_seconds{job="shop",sync="s",source="a",target="b"} 1.5',
      '# HELP capra_rows_pending Changed rows committed on the source and not yet applied on the target.',
      '# TYPE capra_rows_pending gauge',
      'capra_rows_pending{job="shop",sync="s",source="a",target="b"} 5',
      '# HELP capra_rows_applied_total Rows applied on the target by this daemon.',
      '# TYPE capra_rows_applied_total counter',
      'capra_rows_applied_total{job="shop",sync="r",source="x",target="y"} 0',
      'capra_rows_applied_total{job="shop",sync="s",source="a",target="b"} 5',
      '# HELP capra_runs_total Runs of the lane by result (ok or error).',
      '# TYPE capra_runs_total counter',
      'capra_runs_total{job="shop",sync="r",source="x",target="y",result="error"} 0',
      'capra_runs_total{job="shop",sync="r",source="x",target="y",result="ok"} 0',
      'capra_runs_total{job="shop",sync="s",source="a",target="b",result="error"} 1',
      'capra_runs_total{job="shop",sync="s",source="a",target="b",result="ok"} 1',
      '# HELP capra_conflicts_total Conflicts resolved in the sync.',
      '# TYPE capra_conflicts_total counter',
      'capra_conflicts_total{job="shop",sync="r"} 2',
      'capra_conflicts_total{job="shop",sync="s"} 0',
      '# HELP capra_scrape_refresh_seconds Time taken reading pending rows and lag for the last scrape.',
      '# TYPE capra_scrape_refresh_seconds gauge',
      '',
    ].join('\n'),
  );
  m.setActive(false);
  t.equal(value(await m.render(), 'capra_active', { job: 'shop' }), 0, 'standby shows 0');
});

t.test('render: before anything is reported', async (t) => {
  const text = await new Metrics('j').render();
  t.same(parse(text), [{ name: 'capra_active', labels: { job: 'j' }, value: 0 }], 'only capra_active, at 0');
  for (const name of ['capra_lag_seconds', 'capra_rows_pending', 'capra_rows_applied_total', 'capra_runs_total', 'capra_conflicts_total']) {
    t.match(text, new RegExp(`^# TYPE ${name} (gauge|counter)$`, 'm'), `${name} is declared`);
  }
  t.notMatch(text, /capra_errors_total/, 'failed runs are capra_runs_total{result="error"}, not a metric of their own');
});

t.test('render: two daemons in one process keep their own series', async (t) => {
  const shop = new Metrics('shop');
  const crm = new Metrics('crm');
  shop.runFinished(ab, { rows: 3 });
  shop.setActive(true);
  crm.runFinished(ab, { rows: 5, error: 'boom' });
  const [a, b] = [await shop.render(), await crm.render()];
  t.same([...new Set(parse(a).map((s) => s.labels.job))], ['shop'], 'only shop in shop');
  t.same([...new Set(parse(b).map((s) => s.labels.job))], ['crm'], 'only crm in crm');
  t.equal(value(a, 'capra_rows_applied_total', ab), 3);
  t.equal(value(b, 'capra_rows_applied_total', ab), 5);
  t.equal(value(a, 'capra_active', {}), 1);
  t.equal(value(b, 'capra_active', {}), 0);
  t.equal(value(b, 'capra_runs_total', { ...ab, result: 'error' }), 1);
  t.equal(value(a, 'capra_runs_total', { ...ab, result: 'error' }), 0);
  t.not(shop.registry, crm.registry, 'a registry each');
  t.same(await globalRegistry.metrics(), '\n', "prom-client's global registry is left empty");
});

t.test('render: odd label values are escaped', async (t) => {
  const job = 'job "q" \\ back';
  const lane = { sync: 'we"ird\\sync\nline two', source: 'Src Node', target: 'tgt\\"\n' };
  const m = new Metrics(job);
  m.runFinished(lane, { rows: 7 });
  m.setPending(lane, 1, 0.25);
  m.setConflicts(lane.sync, 4);
  const text = await m.render();
  t.ok(
    text.includes('capra_rows_applied_total{job="job \\"q\\" \\\\ back",sync="we\\"ird\\\\sync\\nline two",source="Src Node",target="tgt\\\\\\"\\n"} 7\n'),
    'escaped exactly as the format says',
  );
  t.notOk(/\nline two/.test(text), 'no raw newline inside a label value');
  const samples = parse(text); // throws on any malformed line
  const applied = samples.find((s) => s.name === 'capra_rows_applied_total');
  t.same(applied?.labels, { job, ...lane }, 'label values read back unchanged');
  t.equal(value(text, 'capra_conflicts_total', { job, sync: lane.sync }), 4);
  t.equal(value(text, 'capra_lag_seconds', { sync: lane.sync }), 0.25);
});

t.test('render: counters increase', async (t) => {
  const m = new Metrics('j');
  m.runFinished(ab, { rows: 10 });
  let text = await m.render();
  t.equal(value(text, 'capra_rows_applied_total', ab), 10);
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'ok' }), 1);
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'error' }), 0);
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'error' }), 0, 'failed runs (was capra_errors_total)');
  m.runFinished(ab, { rows: 0 });
  m.runFinished(ab, { rows: 4, error: 'target unreachable' });
  m.runFinished(ab, { rows: 0, error: 'target unreachable' });
  m.runFinished(ab, { rows: 6 });
  text = await m.render();
  t.equal(value(text, 'capra_rows_applied_total', ab), 20, 'rows of failed runs count too: their batches committed');
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'ok' }), 3);
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'error' }), 2);
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'error' }), 2, 'failed runs (was capra_errors_total)');
  m.setConflicts('s', 1);
  m.setConflicts('s', 3);
  t.equal(value(await m.render(), 'capra_conflicts_total', { sync: 's' }), 3, 'conflicts show the latest total');
});

t.test('render: an unknown pending count or lag omits the series', async (t) => {
  const m = new Metrics('j');
  m.setPending(ab, 8, 12.5);
  let text = await m.render();
  t.equal(value(text, 'capra_rows_pending', ab), 8);
  t.equal(value(text, 'capra_lag_seconds', ab), 12.5);
  m.setPending(ab, null, 3);
  text = await m.render();
  t.equal(value(text, 'capra_rows_pending', ab), undefined, 'rows pending unknown: no series');
  t.equal(value(text, 'capra_lag_seconds', ab), 3);
  m.setPending(ab, 0, null);
  text = await m.render();
  t.equal(value(text, 'capra_rows_pending', ab), 0, 'zero is known, and shown');
  t.equal(value(text, 'capra_lag_seconds', ab), undefined, 'lag unknown: no series');
  m.setPending(ab, null, null);
  text = await m.render();
  t.notOk(/^capra_(rows_pending|lag_seconds)\{/m.test(text), 'neither series');
  t.equal(value(text, 'capra_runs_total', { ...ab, result: 'ok' }), 0, 'the lane is still known');
});

t.test('render: forgetLane removes the lane series', async (t) => {
  const m = new Metrics('j');
  const ac = { sync: 's', source: 'a', target: 'c' };
  for (const l of [ab, ac]) {
    m.runFinished(l, { rows: 1 });
    m.setPending(l, 2, 1);
  }
  m.setConflicts('s', 0);
  m.forgetLane(ab);
  let samples = parse(await m.render());
  t.same(
    samples.filter((s) => s.labels.target === 'b'),
    [],
    'nothing left of a -> b',
  );
  t.equal(samples.filter((s) => s.labels.target === 'c').length, 5, 'a -> c keeps its five series (six with the dropped capra_errors_total)');
  t.equal(value(await m.render(), 'capra_conflicts_total', { sync: 's' }), 0, 'the sync still has a lane: conflicts stay');
  m.forgetLane(ac);
  samples = parse(await m.render());
  t.same(samples, [{ name: 'capra_active', labels: { job: 'j' }, value: 0 }], 'last lane of the sync gone: its conflicts too');
  m.runFinished(ab, { rows: 2 });
  t.equal(value(await m.render(), 'capra_rows_applied_total', ab), 2, 'a lane that comes back starts from 0');
});

t.test('HTTP: /metrics, 404, 405, refresh that fails or hangs', async (t) => {
  const m = new Metrics('j');
  const logger = recordingLogger();
  let mode: 'ok' | 'throw' | 'hang' = 'ok';
  let calls = 0;
  let pending = 4;
  const srv = await serveMetrics({
    metrics: m,
    port: 0,
    refreshTimeoutMs: 300,
    logger,
    refresh: async () => {
      calls++;
      if (mode === 'throw') throw new Error('source unreachable');
      if (mode === 'hang') return new Promise<void>(() => {});
      m.setPending(ab, pending, 1.25);
    },
  });
  t.teardown(() => srv.close());
  t.ok(srv.port > 0, `a free port was chosen (${srv.port})`);
  const base = `http://127.0.0.1:${srv.port}`;

  let r = await fetch(`${base}/metrics`);
  t.equal(r.status, 200);
  t.equal(r.headers.get('content-type'), METRICS_CONTENT_TYPE);
  t.equal(METRICS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  let text = await r.text();
  t.equal(value(text, 'capra_rows_pending', ab), 4, 'refresh ran before rendering');
  t.ok((value(text, 'capra_scrape_refresh_seconds', { job: 'j' }) ?? -1) >= 0, 'refresh time reported');
  t.equal(calls, 1);

  pending = 9;
  text = await (await fetch(`${base}/metrics?x=1`)).text();
  t.equal(value(text, 'capra_rows_pending', ab), 9, 'each scrape refreshes; a query string is ignored');

  r = await fetch(`${base}/other`);
  t.equal(r.status, 404, 'other paths: 404');
  await r.text();
  r = await fetch(`${base}/`);
  t.equal(r.status, 404, '/: 404');
  await r.text();
  r = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  t.equal(r.status, 405, 'POST: 405');
  t.equal(r.headers.get('allow'), 'GET');
  await r.text();
  r = await fetch(`${base}/metrics`, { method: 'DELETE' });
  t.equal(r.status, 405, 'DELETE: 405');
  await r.text();
  t.equal(calls, 2, 'refused requests do not refresh');

  mode = 'throw';
  pending = 100;
  r = await fetch(`${base}/metrics`);
  t.equal(r.status, 200, 'a refresh that throws still answers 200');
  text = await r.text();
  t.equal(value(text, 'capra_rows_pending', ab), 9, 'with the last values');
  t.equal(value(text, 'capra_lag_seconds', ab), 1.25);
  t.match(logger.lines.at(-1), { level: 'warn', obj: { err: 'source unreachable' }, msg: /refresh failed/ }, 'a warning is logged');

  mode = 'hang';
  const before = calls;
  const t0 = Date.now();
  const [r1, r2] = await Promise.all([fetch(`${base}/metrics`), fetch(`${base}/metrics`)]);
  const took = Date.now() - t0;
  t.equal(r1.status, 200, 'a refresh that hangs: 200');
  t.equal(r2.status, 200, 'for the concurrent scrape too');
  t.equal(value(await r1.text(), 'capra_rows_pending', ab), 9, 'with the last values');
  await r2.text();
  t.ok(took >= 250 && took < 3000, `answered after the timeout (${took} ms)`);
  t.equal(calls, before + 1, 'one refresh at a time: the concurrent scrape waited on the same one');
  t.match(logger.lines.at(-1), { level: 'warn', obj: { timeoutMs: 300 }, msg: /timed out/ });
  r = await fetch(`${base}/metrics`);
  t.equal(r.status, 200, 'the next scrape, the refresh still stuck, answers too');
  await r.text();
  t.equal(calls, before + 1, 'and does not start another refresh on top of the stuck one');

  await srv.close();
  await t.rejects(fetch(`${base}/metrics`), 'closed: nothing listens any more');
});

t.test('HTTP: no refresh, a port in use, default host', async (t) => {
  const m = new Metrics('j');
  m.runFinished(ab, { rows: 1 });
  const srv = await serveMetrics({ metrics: m, port: 0 });
  t.teardown(() => srv.close());
  const r = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
  t.equal(r.status, 200, 'listens on 127.0.0.1 by default');
  const text = await r.text();
  t.equal(text, await m.render(), 'without refresh: the current values');
  t.notOk(/^capra_scrape_refresh_seconds\{/m.test(text), 'no refresh: no refresh time');
  await t.rejects(
    serveMetrics({ metrics: m, port: srv.port }),
    /could not serve metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE.*choose another metrics port/,
    'a port in use is refused, saying what to do',
  );
  await srv.close();
  await srv.close(); // idempotent
  // The port is free again.
  await new Promise<void>((resolve, reject) => {
    const s = net.createServer().once('error', reject);
    s.listen(srv.port, '127.0.0.1', () => s.close(() => resolve()));
  });
});

t.test('lanePending against real databases', async (t) => {
  const { clusters } = testClusters();
  const [c1, c2] = clusters;
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]',
  });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());

  t.same(await lanePending(conns, job.name, 's', 'a', 'b'), { rows: 0, lagSeconds: 0 }, 'nothing written yet: 0 pending, no lag');
  t.equal(await lanePending(conns, job.name, 'nosuch', 'a', 'b'), null, 'no position known: null');

  await sql(job.urls.a!, 'INSERT INTO x VALUES (1), (2), (3)');
  const p = await lanePending(conns, job.name, 's', 'a', 'b');
  t.equal(p?.rows, 3, '3 rows pending');
  t.ok(p !== null && p.lagSeconds >= 0 && p.lagSeconds < 60, `lag is the age of the oldest change (${p?.lagSeconds} s)`);

  await runLane(conns, { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' }, 1000, {});
  t.same(await lanePending(conns, job.name, 's', 'a', 'b'), { rows: 0, lagSeconds: 0 }, 'after a run: 0 pending');
  t.equal((await sql<{ n: number }>(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 3, 'the rows are on b');
});
