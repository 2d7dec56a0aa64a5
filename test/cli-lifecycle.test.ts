// The daemon's life through the real CLI: install, add-triggers, start
// (detached: pidfile + JSON log named after the job), a refused second start,
// status (text and JSON), stop, a stale pidfile, start --foreground under
// SIGTERM, restart; and where pidfiles and logs go by default.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { logfilePath, pidfilePath } from '../orchestrator/src/config/types.js';
import type { Status } from '../orchestrator/src/status/status.js';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { type Job, cli, digest, makeJob, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text);
  CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
`;
const SYNC = 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items, public.pairs] }';

/** Whether the process exists and has not exited (a zombie waiting to be reaped counts as gone). */
async function running(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: kill(0) said it exists
  }
}

async function pidInFile(file: string): Promise<number | null> {
  try {
    const n = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(n) ? n : null;
  } catch {
    return null;
  }
}

/**
 * Every daemon this test starts is stopped when it ends, pass or fail:
 * SIGTERM, then SIGKILL if it does not go. Registered after makeJob, so it
 * runs before makeJob's own teardown drops the databases.
 */
function guardDaemons(t: Test, job: Job): { track: (pid: number) => void; children: ChildProcess[] } {
  const pids = new Set<number>();
  const children: ChildProcess[] = [];
  t.teardown(async () => {
    const inFile = await pidInFile(pidfilePath(job.cfg));
    if (inFile !== null) pids.add(inFile);
    for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) pids.add(c.pid);
    for (const pid of pids) {
      if (!(await running(pid))) continue;
      try {
        process.kill(pid, 'SIGTERM');
        await waitFor(async () => !(await running(pid)), { what: `pid ${pid} to stop`, timeoutMs: 20_000, intervalMs: 100 });
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
  return { track: (pid) => void pids.add(pid), children };
}

async function capra(job: Job, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return cli(['--config', job.configPath, ...args]);
}

async function statusJson(job: Job): Promise<{ code: number; st: Status }> {
  const r = await capra(job, 'status', '--json');
  return { code: r.code, st: JSON.parse(r.stdout) as Status };
}

const pidOf = (stdout: string): number => Number(/\bpid (\d+)/.exec(stdout)?.[1] ?? NaN);

/** A pid that belonged to a process which has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => c.once('exit', resolve));
  return c.pid!;
}

t.test('install, add-triggers, start, status, stop, stale pidfile, restart', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: SYNC });
  const guard = guardDaemons(t, job);
  const pidfile = path.join(job.dir, `capra-${job.name}.pid`);
  const logfile = path.join(job.dir, `capra-${job.name}.log`);
  t.equal(pidfilePath(job.cfg), pidfile, 'the pidfile is capra-<name>.pid in run_dir');
  t.equal(logfilePath(job.cfg), logfile, 'the log is capra-<name>.log in log_dir');

  const inst = await capra(job, 'install');
  t.equal(inst.code, 0, `install exits 0 ${inst.stderr}`);
  const trig = await capra(job, 'add-triggers');
  t.equal(trig.code, 0, `add-triggers exits 0 ${trig.stderr}`);
  const trigOut = trig.stdout + trig.stderr;
  for (const table of ['public.items', 'public.pairs']) {
    t.match(trigOut, new RegExp(`^s: a: ${table.replace('.', '\\.')}: triggers added$`, 'm'), `progress line for ${table}`);
  }
  t.match(trig.stdout, /sync s: capture triggers on 2 table\(s\)/, 'a summary per sync');

  // Start, detached.
  t.notOk(existsSync(pidfile), 'no pidfile before start');
  const start = await capra(job, 'start');
  t.equal(start.code, 0, `start exits 0 ${start.stderr}`);
  const pid = pidOf(start.stdout);
  t.ok(Number.isInteger(pid) && pid > 0, `start prints the pid: ${start.stdout.trim()}`);
  guard.track(pid);
  t.equal(await pidInFile(pidfile), pid, 'the pidfile holds that pid');
  t.ok(await running(pid), 'that process is alive');
  t.ok(start.stdout.includes(pidfile), 'start names the pidfile');

  await waitFor(async () => existsSync(logfile) && (await readFile(logfile, 'utf8')).includes('\n'), { what: 'the daemon log' });
  await waitFor(
    async () => {
      const lines = (await readFile(logfile, 'utf8')).split('\n').filter(Boolean);
      return lines.some((l) => (JSON.parse(l) as { pid?: number }).pid === pid);
    },
    { what: 'the log to record the running pid' },
  );
  const records = (await readFile(logfile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(records.length > 0, 'the log has records');
  t.ok(
    records.every((r) => r.job === job.name && typeof r.msg === 'string' && typeof r.time === 'number'),
    'every log line is a JSON record with job, msg and time',
  );

  // A second start is refused, naming the running pid.
  const again = await capra(job, 'start');
  t.not(again.code, 0, 'a second start fails');
  t.match(again.stderr, /^capra: [^\n]+\n$/, 'in one line');
  t.match(again.stderr, new RegExp(`\\b${pid}\\b`), 'naming the running pid');
  t.equal(await pidInFile(pidfile), pid, 'the pidfile is untouched');
  t.ok(await running(pid), 'the daemon still runs');

  // A change on the source arrives on the target.
  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'one'), (2, 'two')`);
  await sql(job.urls.a!, `INSERT INTO pairs VALUES (1, 'x', 'p')`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  await waitSame(job, 'pairs', ['a', 'b'], { orderBy: 'a, b' });
  t.equal(await digest(job.urls.b!, 'items', 'id'), '(1,one)\n(2,two)', 'the rows arrived on b');

  // status --json: caught up.
  await waitFor(
    async () => {
      const { st } = await statusJson(job);
      return st.syncs.every((s) => s.pendingRows === 0 && s.lanes.every((l) => l.lastOkAt !== null));
    },
    { what: 'status to show the sync caught up', intervalMs: 200 },
  );
  const { code: jcode, st } = await statusJson(job);
  t.equal(jcode, 0, 'status --json exits 0');
  t.equal(st.job, job.name);
  t.equal(st.daemon.running, true, 'daemon.running');
  t.equal(st.daemon.pid, pid, 'daemon.pid');
  t.equal(st.daemon.pidfile, pidfile, 'daemon.pidfile');
  t.equal(st.syncs.length, 1);
  const s = st.syncs[0]!;
  t.equal(s.name, 's');
  t.equal(s.state, 'ok', 'the sync is ok');
  t.equal(s.pendingRows, 0, 'nothing pending');
  t.equal(s.lanes.length, 1, 'one lane a -> b');
  for (const l of s.lanes) {
    t.ok(
      l.lastOkAt !== null && Date.parse(l.lastOkAt) <= Date.now() && Date.parse(l.lastOkAt) > Date.now() - 600_000,
      `lane ${l.source} -> ${l.target}: lastOkAt is a recent time (${l.lastOkAt})`,
    );
    t.equal(l.pendingRows, 0, 'lane pendingRows');
  }
  t.ok(st.healthy, 'healthy');

  // status, human form.
  const text = await capra(job, 'status');
  t.equal(text.code, 0, `status exits 0 ${text.stderr}`);
  t.match(
    text.stdout,
    new RegExp(`daemon running, pid ${pid} \\(pidfile ${pidfile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`),
    'shows the daemon running with its pid and pidfile',
  );
  t.match(text.stdout, /^sync s: ok, last ok \d+s ago, pending 0 rows\b/m, 'per sync: state, last successful run, rows pending');
  t.match(text.stdout, /^ {2}a -> b: ok, last run \d+s ago, pending 0\b/m, 'per lane: state, last run, rows pending');

  // Pending rows count while the daemon is away: stop, write, look.
  const stop = await capra(job, 'stop');
  t.equal(stop.code, 0, `stop exits 0 ${stop.stderr}`);
  t.match(stop.stdout, new RegExp(`\\b${pid}\\b`), 'stop names the pid');
  t.notOk(await running(pid), 'the process is gone');
  t.notOk(existsSync(pidfile), 'the pidfile is removed');

  const down = await capra(job, 'status');
  t.not(down.code, 0, 'status exits non-zero when the daemon is down');
  t.match(down.stdout, /daemon NOT running/i, 'and says the daemon is not running');
  await sql(job.urls.a!, `INSERT INTO items VALUES (3, 'three')`);
  const { code: dcode, st: dst } = await statusJson(job);
  t.not(dcode, 0, 'status --json exits non-zero too');
  t.equal(dst.daemon.running, false, 'daemon.running is false');
  t.equal(dst.daemon.pid, null, 'no pid');
  t.equal(dst.syncs[0]!.pendingRows, 1, 'the new row is pending');

  const stopAgain = await capra(job, 'stop');
  t.equal(stopAgain.code, 0, 'stop when not running is harmless');

  // A stale pidfile (its process gone) does not block start.
  const stale = await deadPid();
  t.notOk(await running(stale), 'control: the stale pid is not running');
  await writeFile(pidfile, `${stale}\n`);
  const start2 = await capra(job, 'start');
  t.equal(start2.code, 0, `start over a stale pidfile exits 0 ${start2.stderr}`);
  const pid2 = pidOf(start2.stdout);
  guard.track(pid2);
  t.not(pid2, stale, 'a new pid');
  t.equal(await pidInFile(pidfile), pid2, 'the stale pidfile was replaced');
  t.ok(await running(pid2), 'the new daemon is alive');
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  t.equal(await digest(job.urls.b!, 'items', 'id'), '(1,one)\n(2,two)\n(3,three)', 'the change made while down arrived');

  // restart: a new pid, the old one gone.
  const restart = await capra(job, 'restart');
  t.equal(restart.code, 0, `restart exits 0 ${restart.stderr}`);
  const pid3 = Number(/started job \S+ as pid (\d+)/.exec(restart.stdout)?.[1] ?? NaN);
  guard.track(pid3);
  t.ok(Number.isInteger(pid3) && pid3 !== pid2, `restart gives a new pid (${pid2} -> ${pid3})`);
  t.notOk(await running(pid2), 'the old daemon is gone');
  t.ok(await running(pid3), 'the new daemon runs');
  t.equal(await pidInFile(pidfile), pid3, 'the pidfile holds the new pid');
  await sql(job.urls.a!, `UPDATE items SET name = 'uno' WHERE id = 1`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });

  const stop3 = await capra(job, 'stop');
  t.equal(stop3.code, 0, 'stop exits 0');
  t.notOk(await running(pid3), 'the restarted daemon is gone');
  t.notOk(existsSync(pidfile), 'the pidfile is removed');
});

t.test('start --foreground stops gracefully on SIGTERM', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: SYNC });
  const guard = guardDaemons(t, job);
  for (const cmd of ['install', 'add-triggers']) t.equal((await capra(job, cmd)).code, 0, `${cmd} exits 0`);
  const pidfile = pidfilePath(job.cfg);

  const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'capra.js'), '--config', job.configPath, 'start', '--foreground'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  guard.children.push(child);
  let output = '';
  child.stdout.on('data', (d: Buffer) => void (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => void (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  await waitFor(async () => (await pidInFile(pidfile)) === child.pid || child.exitCode !== null, { what: 'the foreground daemon to write its pidfile' });
  t.equal(await pidInFile(pidfile), child.pid, `the pidfile holds the foreground pid ${output}`);
  const st = await statusJson(job);
  t.equal(st.st.daemon.pid, child.pid, 'status sees the foreground daemon');

  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'fg')`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  t.equal(await digest(job.urls.b!, 'items', 'id'), '(1,fg)', 'the foreground daemon replicates');

  child.kill('SIGTERM');
  const { code, signal } = await exited;
  t.equal(signal, null, 'not killed by the signal');
  t.equal(code, 0, `exit code 0 ${code ? output : ''}`);
  t.notOk(existsSync(pidfile), 'the pidfile is removed');
  t.match(output, /"msg":"stopped"/, 'its log says it stopped');
});

t.test('capra start right after kill -9 of the daemon: the killed process, a zombie for now, does not hold the pidfile', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: SYNC });
  const guard = guardDaemons(t, job);
  for (const cmd of ['install', 'add-triggers']) t.equal((await capra(job, cmd)).code, 0, `${cmd} exits 0`);
  const pidfile = pidfilePath(job.cfg);
  // The daemon's parent never reaps it (the shell becomes a sleep that waits for nothing), so once
  // killed it stays a zombie, as it does for a moment after any kill -9 until its parent reaps it.
  const parent = spawn(
    '/bin/sh',
    ['-c', '"$@" & exec sleep 600', 'sh', process.execPath, path.join(packageRoot(), 'bin', 'capra.js'), '--config', job.configPath, 'start', '--foreground'],
    {
      stdio: 'ignore',
    },
  );
  guard.children.push(parent);
  await waitFor(
    async () => {
      const pid = await pidInFile(pidfile);
      return pid !== null && pid !== parent.pid;
    },
    { what: 'the daemon to write its pidfile' },
  );
  const killed = (await pidInFile(pidfile))!;
  process.kill(killed, 'SIGKILL');
  await waitFor(
    async () => {
      const stat = await readFile(`/proc/${killed}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
    },
    { what: 'the killed daemon to be a zombie' },
  );
  t.equal(await pidInFile(pidfile), killed, 'control: the pidfile still names the killed daemon, now a zombie');

  const start = await capra(job, 'start');
  t.equal(start.code, 0, `start exits 0 ${start.stderr}`);
  const pid = pidOf(start.stdout);
  guard.track(pid);
  t.not(pid, killed, 'a new daemon');
  t.equal(await pidInFile(pidfile), pid, 'its pid replaced the killed one in the pidfile');
  await sql(job.urls.a!, `INSERT INTO items VALUES (7, 'after kill -9')`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  t.equal((await capra(job, 'stop')).code, 0, 'stop exits 0');
  parent.kill('SIGKILL');
});

t.test('default run and log directory: $XDG_STATE_HOME/capra, else ~/.local/state/capra', async (t) => {
  const text = stringify({
    name: 'shop',
    databases: { a: 'postgres://app@127.0.0.1/shop', b: 'postgres://app@127.0.0.2/shop' },
    syncs: { s: { sources: ['a'], targets: ['b'] } },
  });
  const xdg = parseConfigText(text, 'capra.yml', { XDG_STATE_HOME: '/srv/state' });
  t.equal(xdg.runDir, '/srv/state/capra', 'run_dir under $XDG_STATE_HOME/capra');
  t.equal(xdg.logDir, '/srv/state/capra', 'log_dir under $XDG_STATE_HOME/capra');
  t.equal(pidfilePath(xdg), '/srv/state/capra/capra-shop.pid');
  t.equal(logfilePath(xdg), '/srv/state/capra/capra-shop.log');

  const home = path.join(homedir(), '.local', 'state', 'capra');
  for (const env of [{}, { XDG_STATE_HOME: '' }]) {
    const cfg = parseConfigText(text, 'capra.yml', env);
    t.equal(cfg.runDir, home, `run_dir ~/.local/state/capra with ${JSON.stringify(env)}`);
    t.equal(cfg.logDir, home, `log_dir ~/.local/state/capra with ${JSON.stringify(env)}`);
  }

  const explicit = parseConfigText(`${text}run_dir: /run/capra\nlog_dir: /var/log/capra\n`, 'capra.yml', { XDG_STATE_HOME: '/srv/state' });
  t.equal(explicit.runDir, '/run/capra', 'run_dir in the config wins');
  t.equal(explicit.logDir, '/var/log/capra', 'log_dir in the config wins');
});

t.test('the CLI uses the default directory when the config names none', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: SYNC });
  // The same job without run_dir/log_dir, and XDG_STATE_HOME inside the job's temp dir.
  const file = path.join(job.dir, 'no-dirs.yml');
  await writeFile(file, stringify({ name: job.name, databases: job.urls, syncs: { s: { sources: ['a'], targets: ['b'] } } }));
  const state = path.join(job.dir, 'xdg');
  const r = await cli(['--config', file, 'status', '--json'], { env: { XDG_STATE_HOME: state, CAPRA_RUN_DIR: undefined, CAPRA_LOG_DIR: undefined } });
  const st = JSON.parse(r.stdout) as Status;
  t.equal(st.daemon.pidfile, path.join(state, 'capra', `capra-${job.name}.pid`), 'status looks for the pidfile under $XDG_STATE_HOME/capra');
});
