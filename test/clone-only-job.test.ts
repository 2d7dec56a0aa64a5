// A job used for clones only (no syncs: install, clone, uninstall), and
// uninstall's output: dropping the metadata database it created must not be
// reported as its own connections being lost.
import t, { type Test } from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import type { Logger } from '../orchestrator/src/util/logger.js';
import { type Job, cli, digest, makeJob, startDaemon } from './harness/capra.js';
import { sql, testClusters } from './harness/db.js';

const [c1, c2] = testClusters().clusters;

const schema = 'CREATE TABLE x (id int PRIMARY KEY, v text)';

async function run(t: Test, job: Job, ...args: string[]): Promise<string> {
  const r = await cli(['--config', job.configPath, ...args]);
  t.equal(r.code, 0, `capra ${args.join(' ')} exits 0${r.code ? `: ${r.stderr.trim()}` : ''}`);
  return r.stdout + r.stderr;
}

t.test('uninstall dropping its metadata database prints no "connection lost"', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x] }\n',
  });
  t.ok(job.cfg.metadataIsDefault, 'control: install creates the metadata database, so uninstall drops it');
  await run(t, job, 'install');
  await run(t, job, 'add-triggers');
  // --verbose: a warning at any level would show.
  const out = await run(t, job, '--verbose', 'uninstall');
  t.match(out, /uninstalled job/, 'control: the output is captured');
  t.notMatch(out, /connection lost|connection failed|terminat/i, 'no line about connections being cut');
  const left = await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_database WHERE datname = $1`, [`capra_${job.name}`]);
  t.same(left, [{ n: 0 }], 'the metadata database is gone');
});

t.test('a job with no syncs: install, clone, uninstall', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: 'syncs: {}\n' });
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'v' || g FROM generate_series(1, 300) g`);
  await sql(job.urls.b!, `INSERT INTO x VALUES (1000, 'stale')`);
  await run(t, job, 'install');
  const daemon = startDaemon(t, job);
  const out = await run(t, job, 'clone', '--tables', 'x', '--dbs', 'a:source,b:target', '--wait');
  t.match(out, /clone \d+ queued/);
  t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'), 'b is identical to a');
  const clones = await sql(job.cfg.metadata, `SELECT sync, state, origin FROM repl.clone`);
  t.same(clones, [{ sync: null, state: 'done', origin: 'request' }], 'one requested clone, of no sync');
  t.same(
    await sql(job.urls.a!, `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'x'::regclass`),
    [{ n: 0 }],
    'no capture trigger: nothing replicates',
  );
  await daemon.stop();
  const bye = await run(t, job, 'uninstall');
  t.notMatch(bye, /connection lost/i);
  t.notOk((await sql(job.urls.a!, `SELECT to_regnamespace('repl') AS r`))[0]!.r, 'repl is gone from a');
});

t.test('a connection the job ended itself is no news when its server cuts it late', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, yaml: 'syncs: {}\n' });
  const lines: string[] = [];
  const log = (_: object | string, msg?: string): void => void lines.push(msg ?? '');
  const logger: Logger = { debug: log, info: log, warn: log, error: log, child: () => logger };
  const conns = new Connections(job.cfg, 'capra-cli', logger);
  const client = await conns.connect('a');
  await client.query('SELECT 1');
  client.release();
  await conns.close();
  t.ok((client as unknown as { _ended: boolean })._ended, 'close waited for the connection to end');
  // What DROP DATABASE ... WITH (FORCE) sends a session still there.
  client.emit('error', new Error('terminating connection due to administrator command'));
  t.same(lines, [], 'nothing logged');

  const other = new Connections(job.cfg, 'capra-cli', logger);
  const held = await other.connect('a');
  held.emit('error', new Error('terminating connection due to administrator command'));
  t.same(lines, ['connection lost'], 'control: a connection still in use that is cut is reported');
  held.release(new Error('gone'));
  await other.close();
});
