// capra kick [--wait] and capra pause / resume, through the real CLI. The
// kick reaches the daemon through the metadata database (the sync below has
// no NOTIFY kick and a yearly cron, so nothing else would run it); --wait
// returns once the target holds what was committed before the kick, and
// names what blocks it when it cannot (a stopped node, a paused sync). A
// pause is a row in the metadata database: nothing is applied while it
// stands, across a daemon restart; status shows it without calling the job
// unhealthy; resume catches up at once.
import t, { type Test } from 'tap';
import { parseArgs } from '../orchestrator/src/cli/args.js';
import { CapraError } from '../orchestrator/src/util/errors.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import type { KickResult } from '../orchestrator/src/status/kick-wait.js';
import type { Status } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, cli, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { ownCluster, sql, testClusters } from './harness/db.js';

const [c1, c2] = testClusters().clusters;
const SCHEMA = 'CREATE TABLE x (id int PRIMARY KEY, v text)';
/** Runs only when kicked: no NOTIFY, a yearly cron, an hourly poll. */
const KICKED_ONLY = 'poll_seconds: 3600\nnode_timeout_seconds: 3\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    kick: "0 0 1 1 *"';
const count = async (url: string): Promise<number> => (await sql(url, 'SELECT count(*)::int AS n FROM x'))[0]!.n;
const capra = (job: Job, ...args: string[]) => cli(['--config', job.configPath, ...args], { timeoutMs: 60_000 });

t.test('kick --wait takes SECONDS as its next word or after =, a flag otherwise', async (t) => {
  t.match(parseArgs(['kick', '--wait'], {}), { command: 'kick', kickWait: 60, syncs: [] }, 'default 60 s');
  t.match(parseArgs(['kick', '--wait=2.5', '--sync', 's'], {}), { kickWait: 2.5, syncs: ['s'] }, '--wait=2.5');
  t.match(parseArgs(['kick', '--wait', '7', '--json'], {}), { kickWait: 7, json: true, operands: [] }, '--wait 7');
  t.throws(() => parseArgs(['kick', '--wait', '0'], {}), new CapraError('option --wait: expected a number of seconds, got "0"'));
  t.throws(() => parseArgs(['kick', '--wait', 'soon'], {}), new CapraError('unexpected argument soon for kick (see capra kick --help)'));
  t.throws(() => parseArgs(['clone', '--wait', '5'], {}), new CapraError('option --wait takes no value (capra clone --wait)'));
});

t.test('kick --wait returns 0 once the rows are on the target; --json says per lane what it waited for', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: SCHEMA, yaml: KICKED_ONLY });
  await setUp(job);
  startDaemon(t, job);
  // The daemon's first run (at start) may or may not see this row; the kick must.
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'first' FROM generate_series(1, 10) g`);
  const first = await capra(job, 'kick', '--wait', '30');
  t.equal(first.code, 0, `kick --wait: exit 0 (${first.stderr.trim()})`);
  t.match(first.stdout, /kicked sync\(s\) s \(active daemon \d+@/, 'names the daemon it kicked');
  t.match(first.stdout, /s: a -> b: caught up in [\d.]+ s/, 'and says the lane caught up');
  t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'), 'the target holds every row committed before the kick');

  // Nothing runs the sync now but a kick: these rows stay on a until one.
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'second' FROM generate_series(11, 2000) g`);
  await sql(job.urls.a!, `UPDATE x SET v = 'changed' WHERE id <= 5`);
  const second = await capra(job, 'kick', '--sync', 's', '--wait', '--json');
  t.equal(second.code, 0, `kick --wait --json: exit 0 (${second.stderr.trim()})`);
  t.equal(await count(job.urls.b!), 2000, 'every row is on b when kick --wait returns');
  t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'), 'with the same contents');
  const r = JSON.parse(second.stdout) as KickResult;
  t.match(r, { waited: true, reached: true, daemon: /^\d+@/, seconds: Number }, 'the JSON says it waited and got there');
  t.equal(r.lanes.length, 1, 'one lane');
  t.match(r.lanes[0], { sync: 's', source: 'a', target: 'b', snapshot: /^\d+:\d+:/, reached: true, seconds: Number }, 'the lane: what it waited for');

  const unknown = await capra(job, 'kick', '--sync', 'nope');
  t.equal(unknown.code, 1, 'an unknown sync: exit 1');
  t.match(unknown.stderr, /^capra: unknown sync nope[^\n]*\n$/, 'refused in one line');
});

t.test('kick --wait times out with exit 1 naming the stopped target', async (t) => {
  const own = await ownCluster(t, c1!.binDir);
  const job = await makeJob(t, { nodes: { a: c1!, b: c2!, d: own.info }, schema: SCHEMA, yaml: KICKED_ONLY.replace('targets: [b]', 'targets: [b, d]') });
  await setUp(job);
  startDaemon(t, job);
  await own.stop();
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'while d is down' FROM generate_series(1, 10) g`);
  const started = Date.now();
  const r = await capra(job, 'kick', '--wait', '3', '--json');
  const took = (Date.now() - started) / 1000;
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, /^capra: kick --wait: not caught up after 3 s: sync s, a -> d: d does not answer[^\n]*\n$/, `one line naming d: ${r.stderr.trim()}`);
  t.ok(took < 15, `it gave up in time (${took.toFixed(1)} s)`);
  const j = JSON.parse(r.stdout) as KickResult;
  t.match(j, { waited: true, reached: false }, 'the JSON is printed too');
  t.match(
    j.lanes.find((l) => l.target === 'b'),
    { reached: true },
    'b caught up',
  );
  t.match(
    j.lanes.find((l) => l.target === 'd'),
    { reached: false, seconds: null, blocker: /^d does not answer/ },
    'd did not, and why',
  );
  await own.start();
});

async function statusOf(job: Job): Promise<{ code: number; st: Status; text: string }> {
  const json = await capra(job, 'status', '--json');
  const text = await capra(job, 'status');
  return { code: json.code, st: JSON.parse(json.stdout) as Status, text: text.stdout };
}

t.test('pause: nothing applied, across a daemon restart; status shows it and exits 0; resume catches up', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: SCHEMA, yaml: 'poll_seconds: 300\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]' });
  await setUp(job);
  t.teardown(async () => void (await capra(job, 'stop')));
  t.equal((await capra(job, 'start')).code, 0, 'started');
  await sql(job.urls.a!, `INSERT INTO x VALUES (1, 'before the pause')`);
  await waitSame(job, 'x', ['a', 'b']);

  const paused = await capra(job, 'pause', '--sync', 's');
  t.equal(paused.code, 0, 'pause: exit 0');
  t.match(paused.stdout, /^sync s: paused/, 'says so');
  const unknown = await capra(job, 'pause', '--sync', 'nope');
  t.equal(unknown.code, 1, 'an unknown sync: exit 1');
  t.match(unknown.stderr, /^capra: unknown sync nope[^\n]*\n$/, 'refused in one line');

  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'while paused' FROM generate_series(2, 100) g`);
  t.equal((await capra(job, 'kick', '--sync', 's')).code, 0, 'a kick is taken');
  const blocked = await capra(job, 'kick', '--wait', '2');
  t.equal(blocked.code, 1, 'kick --wait on a paused sync: exit 1');
  t.match(blocked.stderr, /^capra: kick --wait: not caught up after 2 s: sync s, a -> b: sync s is paused/, `names the pause: ${blocked.stderr.trim()}`);
  t.equal(await count(job.urls.b!), 1, 'nothing applied while paused, kicked and notified for seconds');

  let s = await statusOf(job);
  t.equal(s.code, 0, 'status exits 0: a paused sync is not a failing one');
  t.match(s.st.syncs[0], { name: 's', state: 'paused', paused: { at: String, by: String } }, 'status --json: paused');
  t.equal(s.st.syncs[0]!.pendingRows, 99, 'with its backlog');
  t.match(s.text, /^sync s: paused since /m, 'status: paused');

  t.equal((await capra(job, 'restart')).code, 0, 'restarted');
  await sql(job.urls.a!, `INSERT INTO x VALUES (101, 'after the restart')`);
  const still = await capra(job, 'kick', '--wait', '2');
  t.match(still.stderr, /sync s is paused/, 'still paused after the restart');
  t.equal(await count(job.urls.b!), 1, 'and nothing applied');
  s = await statusOf(job);
  t.match({ code: s.code, state: s.st.syncs[0]!.state }, { code: 0, state: 'paused' }, 'status: still paused');

  const resumed = await capra(job, 'resume', '--sync', 's');
  t.equal(resumed.code, 0, 'resume: exit 0');
  t.match(resumed.stdout, /^sync s: resumed/, 'says so');
  // No write since, the poll is 5 minutes away: only the resume wakes the sync.
  await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 10_000 });
  t.equal(await count(job.urls.b!), 101, 'resume caught up at once');
  s = await statusOf(job);
  t.match({ code: s.code, state: s.st.syncs[0]!.state, paused: s.st.syncs[0]!.paused }, { code: 0, state: 'ok', paused: null }, 'status: ok again');
});

t.test('pause and resume a multi-master sync', async (t: Test) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: SCHEMA, yaml: 'poll_seconds: 300\nsyncs:\n  s:\n    sources: [a, b]' });
  await setUp(job);
  startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x VALUES (1, 'a')`);
  await waitSame(job, 'x', ['a', 'b']);
  t.equal((await capra(job, 'pause')).code, 0, 'paused (every sync)');
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a' FROM generate_series(2, 20) g`);
  await sql(job.urls.b!, `INSERT INTO x SELECT g, 'b' FROM generate_series(21, 40) g`);
  const blocked = await capra(job, 'kick', '--wait', '2', '--json');
  t.equal(blocked.code, 1, 'kick --wait: exit 1');
  const j = JSON.parse(blocked.stdout) as KickResult;
  t.same(
    j.lanes.map((l) => [l.source, l.target, l.reached, l.blocker]),
    [
      ['a', 'b', false, 'sync s is paused (capra resume)'],
      ['b', 'a', false, 'sync s is paused (capra resume)'],
    ],
    'both lanes held by the pause',
  );
  t.same([await count(job.urls.a!), await count(job.urls.b!)], [20, 21], 'nothing crossed while paused');
  const st = await collectStatus(job.cfg, silentLogger);
  t.equal(st.syncs[0]!.state, 'paused', 'status: paused');
  t.notOk(
    st.problems.some((p) => p.includes('sync s')),
    'and not a problem',
  );
  t.equal((await capra(job, 'resume')).code, 0, 'resumed');
  await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 10_000 });
  t.equal(await count(job.urls.a!), 40, 'both caught up at once');
  const done = await capra(job, 'kick', '--wait', '10', '--json');
  t.equal(done.code, 0, 'kick --wait: exit 0');
  t.match(JSON.parse(done.stdout), { reached: true, lanes: [{ reached: true }, { reached: true }] }, 'both lanes reached');
});
