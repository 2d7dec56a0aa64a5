// Several jobs on one host: two daemons at once sharing node a (and even a
// table), each with its own pidfile, log, metadata database and kick
// channel; removing one never holds back the other or the delta purge.
import t from 'tap';
import { pidfilePath, logfilePath } from '../orchestrator/src/config/types.js';
import { purgeDeltas } from '../orchestrator/src/sync/purge.js';
import { readPid } from '../orchestrator/src/daemon/pidfile.js';
import { existsSync } from 'node:fs';
import { sql, testClusters, waitFor, withClient } from './harness/db.js';
import { cli, makeJob, waitSame } from './harness/capra.js';

const [c1, c2, c3] = testClusters().clusters;

t.test('two jobs on one host, sharing node a and table x', async (t) => {
  const schema = 'CREATE TABLE x (id int PRIMARY KEY, v text)';
  const job1 = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: 'syncs:\n  s: { sources: [a], targets: [b] }' });
  const job2 = await makeJob(t, { nodes: { a: job1.urls.a!, c: c3! }, yaml: 'syncs:\n  s: { sources: [a], targets: [c] }' });
  await sql(job2.urls.c!, schema);
  for (const job of [job1, job2]) {
    for (const cmd of ['install', 'add-triggers', 'start']) t.equal((await cli(['--config', job.configPath, cmd])).code, 0, `${job.name}: ${cmd}`);
    t.teardown(() => cli(['--config', job.configPath, 'stop']).then(() => undefined));
  }
  const pids = await Promise.all([job1, job2].map((j) => readPid(pidfilePath(j.cfg))));
  t.ok(pids[0] && pids[1] && pids[0] !== pids[1], 'two daemons, two pids');
  t.not(pidfilePath(job1.cfg), pidfilePath(job2.cfg), 'own pidfiles');
  t.not(logfilePath(job1.cfg), logfilePath(job2.cfg), 'own logs');
  t.not(job1.cfg.metadata, job2.cfg.metadata, 'own metadata databases');
  t.ok(existsSync(logfilePath(job1.cfg)) && existsSync(logfilePath(job2.cfg)), 'both logs written');

  // Each job is kicked on its own channel, from the one shared capture function.
  const kickBody = await sql<{ src: string }>(
    job1.urls.a!,
    `SELECT p.prosrc AS src FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid WHERE tg.tgrelid = 'x'::regclass AND tg.tgname = 'capra_capture_row'`,
  );
  t.match(kickBody[0]!.src, `pg_notify('capra_${job1.name}'`);
  t.match(kickBody[0]!.src, `pg_notify('capra_${job2.name}'`);

  await sql(job1.urls.a!, `INSERT INTO x SELECT g, 'both' FROM generate_series(1, 50) g`);
  await waitSame(job1, 'x', ['a', 'b']);
  await waitSame(job2, 'x', ['a', 'c']);
  t.pass('one write on a reaches both jobs');

  // Job 1 stopped: its consumer holds the log back; uninstalled: it no longer does.
  t.equal((await cli(['--config', job1.configPath, 'stop'])).code, 0, 'job1 stopped');
  await sql(job1.urls.a!, `UPDATE x SET v = 'job2 only' WHERE id <= 10`);
  await waitSame(job2, 'x', ['a', 'c']);
  t.pass('job2 carries on alone');
  const deltas = async (): Promise<number> => (await sql(job1.urls.a!, 'SELECT count(*)::int AS n FROM repl.delta'))[0]!.n;
  await withClient(job1.urls.a!, purgeDeltas);
  t.ok((await deltas()) >= 10, 'the stopped job1 still holds its unapplied deltas');
  t.equal((await cli(['--config', job1.configPath, 'uninstall'])).code, 0, 'job1 uninstalled');
  await sql(job1.urls.a!, `UPDATE x SET v = 'after uninstall' WHERE id = 1`);
  await waitSame(job2, 'x', ['a', 'c']);
  // job2's lane confirms its position on a just after each batch commits on c; nothing else holds the log.
  await waitFor(
    async () => {
      await withClient(job1.urls.a!, purgeDeltas);
      return (await deltas()) === 0;
    },
    { what: 'the purge to empty the log' },
  );
  t.pass('with job1 gone, the purge empties the log');
  const body = await sql<{ src: string }>(
    job1.urls.a!,
    `SELECT p.prosrc AS src FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid WHERE tg.tgrelid = 'x'::regclass AND tg.tgname = 'capra_capture_row'`,
  );
  t.notMatch(body[0]!.src, `capra_${job1.name}'`, 'job1 is no longer kicked');
});
