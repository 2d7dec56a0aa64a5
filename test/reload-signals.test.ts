// reload switches to a new config without losing work; a first SIGTERM lets
// the run in progress finish, a second one exits at once.
import { existsSync } from 'node:fs';
import t from 'tap';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { pidfilePath } from '../orchestrator/src/config/types.js';
import { addTriggersForSyncs } from '../orchestrator/src/triggers/sync-triggers.js';
import { install } from '../orchestrator/src/install/install.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { applyingInto, makeJob, setUp, spawnCli, startDaemon, waitSame } from './harness/capra.js';
import { readFile } from 'node:fs/promises';

const [c1, c2, c3] = testClusters().clusters;

t.test('reload adds a sync while writes keep flowing; nothing is lost', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY); CREATE TABLE y (id int PRIMARY KEY)',
    yaml: 'syncs:\n  s1: { sources: [a], targets: [b], tables: { include: [public.x] } }',
  });
  await setUp(job);
  const daemon = startDaemon(t, job);
  let writing = true;
  let n = 0;
  const writer = (async () => {
    while (writing) await sql(job.urls.a!, 'INSERT INTO x VALUES ($1)', [++n]);
  })();
  await waitFor(async () => n > 50, { what: 'some writes' });
  const text = `${await readFile(job.configPath, 'utf8')}\n  s2: { sources: [a], targets: [c], tables: { include: [public.y] } }\n`;
  const next = parseConfigText(text, job.configPath);
  await install(next, silentLogger); // c is new to the job
  await addTriggersForSyncs(next, silentLogger, [next.syncs.s2!]);
  await daemon.reload(next);
  t.equal(daemon.workers.length, 2, 'the reloaded daemon runs both lanes');
  await sql(job.urls.a!, 'INSERT INTO y SELECT generate_series(1, 10)');
  await waitFor(async () => n > 150, { what: 'more writes after the reload' });
  writing = false;
  await writer;
  await waitSame(job, 'x', ['a', 'b']);
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, n, 'every write made before, during and after the reload arrived');
  await waitSame(job, 'y', ['a', 'c']);
  t.pass('the new sync replicates');
});

t.test('a second SIGTERM exits at once instead of waiting for the run', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE big (id int PRIMARY KEY, pad text)',
    // About the lane's run: copy_data would otherwise copy the rows first.
    yaml: 'syncs:\n  s: { sources: [a], targets: [b], copy_data: never }',
  });
  await setUp(job);
  await sql(job.urls.a!, `INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g`);
  const { child, output, exit } = spawnCli(t, job, ['start', '--foreground']);
  const applying = (): Promise<boolean> => applyingInto(job.urls.b!, 'big');
  await waitFor(applying, { what: 'the big batch to be applying', intervalMs: 10 });
  child.kill('SIGTERM');
  // Two signals sent at once merge into one: send the second once the first is handled.
  await waitFor(async () => output().includes('signal received'), { what: 'the daemon to take the first signal' });
  t.ok(child.exitCode === null, 'after the first signal the daemon is still finishing its run');
  child.kill('SIGTERM');
  t.equal(await exit, 1, 'exited with status 1 on the second signal');
  await waitFor(async () => !(await applying()), { what: 'the abandoned COPY to end' });
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM big'))[0]!.n, 0, 'the interrupted batch left nothing behind');
  t.notOk(existsSync(pidfilePath(job.cfg)), 'the pidfile is gone');
});
