// The scheduled compare (a sync's `compare` cron expression): the daemon
// compares on its own, keeps the last result per table in the metadata
// database, capra status shows it, and the metrics export it.
import t from 'tap';
import { formatStatus } from '../orchestrator/src/cli/print-status.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2] = testClusters().clusters;

t.test('compare on a schedule: stored, shown by status, exported as metrics', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE items (id int PRIMARY KEY, name text)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }\n    copy_data: never\n    compare: "*/1 * * * * *"\n',
  });
  await setUp(job);
  const daemon = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g`);
  await waitSame(job, 'items', ['a', 'b']);
  await sql(job.urls.b!, `DELETE FROM items WHERE id IN (7, 8)`); // b has no capture trigger: behind the sync's back
  const stored = async (): Promise<{ rows: number; missing: number }[]> =>
    sql(
      job.cfg.metadata,
      `SELECT rows::int AS rows, missing::int AS missing FROM repl.compare_result WHERE sync = 's' AND table_name = 'public.items' AND node = 'b'`,
    );
  await waitFor(async () => (await stored())[0]?.missing === 2, { what: 'a scheduled compare to find the two missing rows' });
  t.same(await stored(), [{ rows: 500, missing: 2 }], 'the last result, in the metadata database');

  const st = await collectStatus(job.cfg, silentLogger);
  t.match(st.syncs[0]!.compare, [{ table: 'public.items', node: 'b', reference: 'a', missing: 2, extra: 0, different: 0 }]);
  t.match(formatStatus(st), /compare public\.items: a -> b: 2 row\(s\) differ \(2 missing, 0 extra, 0 different\), 500 rows/);

  const text = await daemon.metrics.render();
  t.match(text, /^capra_compare_differing_rows\{job="[^"]+",sync="s",table="public.items",node="b"\} 2$/m, 'differing rows exported');
  t.match(text, /^capra_compare_last_run_timestamp_seconds\{job="[^"]+",sync="s"\} \d+(\.\d+)?$/m, 'last run exported');
});
