// `capra start --metrics-port`: the running daemon serves Prometheus metrics
// for its lanes.
import t from 'tap';
import { freePort } from '../orchestrator/src/embedded/cluster.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { cli, makeJob, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

t.test('the daemon serves lag, pending rows, rows applied and runs per lane', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    yaml: 'syncs:\n  s: { sources: [a], targets: [b] }',
  });
  const port = await freePort();
  for (const args of [['install'], ['add-triggers'], ['start', '--metrics-port', String(port)]]) {
    t.equal((await cli(['--config', job.configPath, ...args])).code, 0, args.join(' '));
  }
  t.teardown(() => cli(['--config', job.configPath, 'stop']).then(() => undefined));
  await sql(job.urls.a!, 'INSERT INTO x SELECT generate_series(1, 25)');
  await waitSame(job, 'x', ['a', 'b']);
  const lane = `job="${job.name}",sync="s",source="a",target="b"`;
  let text = '';
  await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      text = await res.text();
      return res.status === 200 && text.includes(`capra_rows_applied_total{${lane}} 25`);
    },
    { what: 'the metrics to count the 25 applied rows' },
  );
  t.match(text, `capra_active{job="${job.name}"} 1`, 'active');
  t.match(text, `capra_rows_pending{${lane}} 0`, 'nothing pending');
  t.match(text, new RegExp(`capra_lag_seconds\\{${lane.replace(/[{}"]/g, '\\$&')}\\} 0\\b`), 'no lag');
  t.match(text, new RegExp(`capra_runs_total\\{${lane.replace(/[{}"]/g, '\\$&')},result="ok"\\} [1-9]`), 'runs counted');
  t.match(text, /# TYPE capra_rows_applied_total counter/);
});
