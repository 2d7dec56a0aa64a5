// Capra-specific test fixtures: a job over fresh databases on the harness's
// clusters, its config file, the CLI as a child process, an in-process daemon,
// and the content barrier tests wait on.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../../orchestrator/src/config/load.js';
import type { Config } from '../../orchestrator/src/config/types.js';
import { Daemon, type DaemonOptions } from '../../orchestrator/src/daemon/daemon.js';
import { install } from '../../orchestrator/src/install/install.js';
import { addTriggersForSyncs } from '../../orchestrator/src/triggers/sync-triggers.js';
import { type Logger, silentLogger } from '../../orchestrator/src/util/logger.js';
import { makeLogger } from '../../orchestrator/src/util/make-logger.js';
import { packageRoot } from '../../orchestrator/src/util/paths.js';
import { type ClusterInfo, type TeardownTest, freshDb, sql, waitFor } from './db.js';

export interface JobSpec {
  name?: string;
  /** Database name in the config -> cluster it lives on (a fresh database each), or a ready URL. */
  nodes: Record<string, ClusterInfo | string>;
  /** SQL run on every node's fresh database before anything else (the user's schema). */
  schema?: string;
  /** The syncs: section and anything else, as YAML lines appended to the generated config. */
  yaml: string;
}

export interface Job {
  name: string;
  dir: string;
  configPath: string;
  cfg: Config;
  urls: Record<string, string>;
}

export async function makeJob(t: TeardownTest, spec: JobSpec): Promise<Job> {
  const name = spec.name ?? `j${randomBytes(4).toString('hex')}`;
  const dir = await mkdtemp(path.join(tmpdir(), `capra-${name}-`));
  const urls: Record<string, string> = {};
  for (const [db, where] of Object.entries(spec.nodes)) {
    urls[db] = typeof where === 'string' ? where : await freshDb(t, where, db);
    if (spec.schema && typeof where !== 'string') await sql(urls[db]!, spec.schema);
  }
  const yaml = [
    `name: ${name}`,
    'databases:',
    ...Object.entries(urls).map(([db, url]) => `  ${db}: ${url}`),
    `run_dir: ${JSON.stringify(dir)}`,
    `log_dir: ${JSON.stringify(dir)}`,
    spec.yaml,
  ].join('\n');
  const configPath = path.join(dir, 'capra.yml');
  await writeFile(configPath, yaml);
  const cfg = parseConfigText(yaml, configPath);
  t.teardown(async () => {
    if (!t.passing()) {
      t.comment(`keeping job dir ${dir}`);
      return;
    }
    // The default metadata database lives on the first node's cluster, outside freshDb's care.
    if (cfg.metadataIsDefault) {
      const admin = new URL(cfg.metadata);
      const db = decodeURIComponent(admin.pathname.slice(1));
      admin.pathname = '/postgres';
      await sql(admin.toString(), `DROP DATABASE IF EXISTS "${db.replaceAll('"', '""')}" WITH (FORCE)`);
    }
    await rm(dir, { recursive: true, force: true });
  });
  return { name, dir, configPath, cfg, urls };
}

/** install + add-triggers for every sync, through the library (the CLI has its own tests). */
export async function setUp(job: Job): Promise<void> {
  await install(job.cfg, silentLogger);
  await addTriggersForSyncs(job.cfg, silentLogger);
}

/** A daemon in this process, stopped when the test ends. Retries fast, to keep tests short. */
export function startDaemon(t: TeardownTest, job: Job, opts: DaemonOptions = {}): Daemon {
  const d = new Daemon(job.cfg, testLogger(job.name), { retryBaseMs: 100, retryCapMs: 1000, ...opts });
  d.start();
  t.teardown(() => d.stop());
  return d;
}

/** Silent, unless CAPRA_TEST_LOG is set to a level (debug, info...): then human lines on stderr. */
export function testLogger(job: string): Logger {
  const level = process.env.CAPRA_TEST_LOG;
  if (!level) return silentLogger;
  return makeLogger({ level: level as 'debug', job, human: true, out: process.stderr });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (bin/capra.js) as a child process. */
export function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(packageRoot(), 'bin', 'capra.js'), ...args],
      { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, cwd: packageRoot() },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface CliChild {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit status (null when ended by a signal). */
  exit: Promise<number | null>;
}

/**
 * The real CLI as a long-running child (start --foreground, a waiting
 * add-triggers): output collected, killed with SIGKILL when the test ends.
 */
export function spawnCli(t: TeardownTest, job: Job, args: string[], env: NodeJS.ProcessEnv = {}): CliChild {
  const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'capra.js'), '--config', job.configPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => void (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  return { child, output: () => out, exit };
}

/** The applier's COPY into public.<table> is running on this database right now. */
export async function applyingInto(url: string, table: string): Promise<boolean> {
  const rows = await sql(
    url,
    `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'capra-sync'
        AND state = 'active' AND query LIKE $1`,
    [`COPY "public"."${table}"%FROM STDIN`],
  );
  return rows.length > 0;
}

/**
 * Every row of a table as text, sorted: two tables match when their digests
 * do. ROW(alias.*) cannot be shadowed by a column named like the alias.
 */
export async function digest(url: string, table: string, orderBy = 'ROW(capra_digest_row.*)::text'): Promise<string> {
  const rows = await sql<{ d: string | null }>(
    url,
    `SELECT string_agg(ROW(capra_digest_row.*)::text, E'\\n' ORDER BY ${orderBy}) AS d FROM ${table} capra_digest_row`,
  );
  return rows[0]?.d ?? '';
}

/** The "caught up" barrier: waits until `table` has the same contents on every listed node. */
export async function waitSame(job: Job, table: string, nodes: string[], opts: { timeoutMs?: number; orderBy?: string } = {}): Promise<void> {
  await waitFor(
    async () => {
      const ds = await Promise.all(nodes.map((n) => digest(job.urls[n]!, table, opts.orderBy)));
      return ds.every((d) => d === ds[0]);
    },
    { what: `${table} to match on ${nodes.join(', ')}`, timeoutMs: opts.timeoutMs ?? 60_000 },
  );
}
