// The one test entry point (`npm test`): start the PostgreSQL clusters once,
// run tap on the compiled test files, always stop the clusters, and end with
// the line `N passed, N failed, N skipped` that CI reads.
//
// Counts come from tap's final summary comment, `# { total, pass, fail, todo,
// skip }`, which counts leaf test points across all files: assertions, plus
// subtests that were skipped/todo or failed without assertions (a crashed or
// timed-out file counts as one failure). "skipped" is skip + todo.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedBinDir, pgMajorVersion, startCluster, type Cluster, type ClusterLogger } from '../../orchestrator/src/embedded/cluster.js';
import { STATE_ENV, type ClusterInfo, type TestClusters } from './db.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TEST_DIR = path.join(ROOT, 'dist', 'test');
const PG15 = '/usr/lib/postgresql/15/bin';

const say = (msg: string) => process.stdout.write(`# capra-test: ${msg}\n`);
const fmt = (o: object | string, m?: string) => (typeof o === 'string' ? o : `${m ?? ''} ${JSON.stringify(o)}`);
const logger: ClusterLogger = {
  debug: () => {},
  info: () => {},
  warn: (o, m) => process.stderr.write(`capra-test warning: ${fmt(o, m)}\n`),
  error: (o, m) => process.stderr.write(`capra-test error: ${fmt(o, m)}\n`),
};

interface Counts {
  pass: number;
  fail: number;
  skip: number;
}

async function findTests(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.test.js'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath ?? e.path, e.name)))
    .sort();
}

async function chooseBinaries(): Promise<{ primary: string; other: string | null; otherSkipReason?: string }> {
  const pgBin = process.env.PG_BIN;
  const primary = pgBin ? path.resolve(pgBin) : embeddedBinDir();
  let other: string | null;
  // PG_OTHER_BIN: the second major of the cross-version test (the matrix sets both).
  if (process.env.PG_OTHER_BIN) other = path.resolve(process.env.PG_OTHER_BIN);
  else if (pgBin) other = embeddedBinDir();
  else if (existsSync(path.join(PG15, 'postgres'))) other = PG15;
  else return { primary, other: null, otherSkipReason: `no second PostgreSQL version (${PG15}/postgres not found)` };
  const [a, b] = await Promise.all([pgMajorVersion(primary), pgMajorVersion(other)]);
  if (a === b) return { primary, other: null, otherSkipReason: `${other} is the same major version (${a}) as the primary` };
  return { primary, other };
}

function info(name: string, c: Cluster): ClusterInfo {
  return { name, port: c.port, host: c.host, user: c.user, major: c.major, binDir: c.binDir };
}

// Parse tap's TAP stream (reporter=tap) for the final summary; fall back to
// top-level test points if the summary never arrives (e.g. tap crashed).
class TapCounter {
  private buf = '';
  summary: Counts | undefined;
  topLevel: Counts = { pass: 0, fail: 0, skip: 0 };

  push(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      this.line(this.buf.slice(0, nl));
      this.buf = this.buf.slice(nl + 1);
    }
  }

  end(): void {
    if (this.buf) this.line(this.buf);
    this.buf = '';
  }

  private line(line: string): void {
    const s = /^# \{ (total: \d+.*) \}\s*$/.exec(line);
    if (s?.[1]) {
      const n: Record<string, number> = {};
      for (const [, k, v] of s[1].matchAll(/(\w+): (\d+)/g)) n[k!] = Number(v);
      this.summary = { pass: n.pass ?? 0, fail: n.fail ?? 0, skip: (n.skip ?? 0) + (n.todo ?? 0) };
      return;
    }
    const p = /^(not ok|ok) \d+\b(.*)$/.exec(line);
    if (!p) return;
    if (/#\s*(SKIP|TODO)\b/i.test(p[2] ?? '')) this.topLevel.skip++;
    else if (p[1] === 'ok') this.topLevel.pass++;
    else this.topLevel.fail++;
  }
}

function runTap(
  files: string[],
  extra: string[],
  env: NodeJS.ProcessEnv,
  onChild: (c: ChildProcess) => void,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; counter: TapCounter }> {
  const args = ['--disable-coverage', '--reporter=tap', '--jobs=2', '--timeout=300', ...extra, ...files];
  // Files are passed explicitly: tap's default `exclude` skips any `dist` folder.
  // detached: tap and its test processes form their own process group, so
  // one signal to the group stops them all (tap alone does not stop its
  // children promptly, and they would keep its stdout pipe open).
  const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tap'), args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  onChild(child);
  const counter = new TapCounter();
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    process.stdout.write(chunk);
    counter.push(chunk);
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      counter.end();
      resolve({ code, signal, counter });
    });
  });
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  // Bare arguments select test files; `--flag=value` options go to tap.
  const fileArgs = argv.filter((a) => !a.startsWith('-'));
  const tapFlags = argv.filter((a) => a.startsWith('-'));
  const files = fileArgs.length ? fileArgs : await findTests(TEST_DIR);
  const base = path.join(os.tmpdir(), `capra-test-${process.pid}-${randomBytes(4).toString('hex')}`);
  const keep = process.env.CAPRA_KEEP_CLUSTERS === '1';
  const started: Cluster[] = [];
  let tap: ChildProcess | undefined;
  let signals = 0;
  const killTap = (sig: NodeJS.Signals) => {
    if (tap?.pid === undefined) return;
    try {
      process.kill(-tap.pid, sig);
    } catch {
      /* group already gone */
    }
  };
  // First signal: ask the tests to stop; a second one, or 5 s later: SIGKILL.
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    process.stderr.write(`capra-test: ${sig} received, stopping tests and clusters\n`);
    killTap(signals > 1 ? 'SIGKILL' : sig);
    if (signals === 1) setTimeout(() => killTap('SIGKILL'), 5_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let counts: Counts = { pass: 0, fail: 0, skip: 0 };
  try {
    if (!files.length) throw new Error(`No *.test.js files under ${TEST_DIR}; did tsc run?`);
    const bins = await chooseBinaries();
    await mkdir(base, { recursive: true });
    const t0 = Date.now();
    const names = ['c1', 'c2', 'c3'];
    const jobs = names.map((n) => ({ name: n, binDir: bins.primary }));
    if (bins.other) jobs.push({ name: 'c_other', binDir: bins.other });
    const results = await Promise.allSettled(
      jobs.map(async (j) => {
        const c = await startCluster({ binDir: j.binDir, dataDir: path.join(base, j.name), logger });
        started.push(c);
        return info(j.name, c);
      }),
    );
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length) throw new Error('Could not start the test clusters', { cause: failed[0]!.reason });
    const infos = results.map((r) => (r as PromiseFulfilledResult<ClusterInfo>).value);
    const state: TestClusters = {
      clusters: infos.filter((c) => c.name !== 'c_other'),
      other: infos.find((c) => c.name === 'c_other') ?? null,
      ...(bins.otherSkipReason ? { otherSkipReason: bins.otherSkipReason } : {}),
    };
    const stateFile = path.join(base, 'clusters.json');
    await writeFile(stateFile, JSON.stringify(state, null, 2));
    say(`clusters up in ${Date.now() - t0} ms: ${infos.map((c) => `${c.name}=pg${c.major}:${c.port}`).join(' ')}`);
    if (signals) throw new Error('Interrupted before the tests started');

    const run = await runTap(files, tapFlags, { ...process.env, [STATE_ENV]: stateFile }, (c) => {
      tap = c;
    });
    const { code, signal, counter } = run;
    counts = counter.summary ?? counter.topLevel;
    if (!counter.summary) process.stderr.write('capra-test: tap printed no summary; counting test files instead\n');
    // A runner failure with no failing test point still has to fail the run.
    if ((code !== 0 || signal) && counts.fail === 0) {
      process.stderr.write(`capra-test: tap exited with ${signal ?? `code ${code}`}\n`);
      counts.fail = 1;
    }
  } catch (e) {
    process.stderr.write(`capra-test: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    if (e instanceof Error && e.cause) process.stderr.write(`caused by: ${String((e.cause as Error).message ?? e.cause)}\n`);
    counts.fail = Math.max(counts.fail, 1);
  } finally {
    const stops = await Promise.allSettled(started.map((c) => c.stop()));
    for (const s of stops) if (s.status === 'rejected') logger.error({ err: String(s.reason) }, 'stopping a cluster failed');
    if (keep) say(`kept clusters' data in ${base}`);
    else await rm(base, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  process.stdout.write(`${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped\n`);
  return counts.fail > 0 ? 1 : 0;
}

process.exitCode = await main();
