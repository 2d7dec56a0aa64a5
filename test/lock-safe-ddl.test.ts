// add-triggers against a busy table: it waits with a short lock_timeout and
// retries, so other writers are not stuck behind its lock request; Ctrl-C
// cancels its statement on the server too.
import t, { type Test } from 'tap';
import { sql, testClusters, waitFor, withClient } from './harness/db.js';
import { type Job, cli, makeJob, spawnCli } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

async function busyJob(t: Test): Promise<Job> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]',
  });
  t.equal((await cli(['--config', job.configPath, 'install'])).code, 0, 'installed');
  return job;
}

const waitingCapra = async (url: string): Promise<number> =>
  (await sql(url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'capra-cli' AND wait_event_type = 'Lock'`))[0]!.n;

t.test('waits and retries while a writer holds the table, without blocking other writers', async (t) => {
  const job = await busyJob(t);
  await withClient(job.urls.a!, async (holder) => {
    await holder.query('BEGIN');
    await holder.query('INSERT INTO x VALUES (1)'); // holds ROW EXCLUSIVE: CREATE TRIGGER must wait
    const run = spawnCli(t, job, ['add-triggers']);
    await waitFor(async () => /lock busy, retrying/.test(run.output()), { what: 'add-triggers to report a retry' });
    // Another writer gets through while Capra keeps retrying: its lock request does not queue writers for long.
    await sql(job.urls.a!, 'INSERT INTO x VALUES (2)');
    t.ok(run.child.exitCode === null, 'a second writer committed while add-triggers was still waiting');
    await holder.query('COMMIT');
    t.equal(await run.exit, 0, 'add-triggers succeeds once the table is free');
  });
  const triggers = await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'x'::regclass AND tgname LIKE 'capra%'`);
  t.ok(triggers[0]!.n > 0, 'the triggers are in place');
});

t.test('Ctrl-C cancels the waiting statement on the server', async (t) => {
  const job = await busyJob(t);
  await withClient(job.urls.a!, async (holder) => {
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE x IN ACCESS EXCLUSIVE MODE');
    const run = spawnCli(t, job, ['add-triggers']);
    await waitFor(async () => (await waitingCapra(job.urls.a!)) > 0, { what: 'add-triggers to wait for the lock' });
    run.child.kill('SIGINT');
    const code = await run.exit;
    t.not(code, 0, 'add-triggers exits non-zero');
    t.match(run.output(), /cancelled/, 'and says it was cancelled');
    t.equal(await waitingCapra(job.urls.a!), 0, 'no Capra backend is left waiting for the lock');
    await holder.query('ROLLBACK');
  });
  const triggers = await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'x'::regclass AND tgname LIKE 'capra%'`);
  t.equal(triggers[0]!.n, 0, 'no trigger was added');
});
