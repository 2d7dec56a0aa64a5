import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A PostgreSQL client tool (pgbench, psql) from PG_BIN, a system PostgreSQL
 * (newest first) or PATH; null when there is none. The embedded servers ship
 * without them, hence the search.
 */
export function findPgTool(name: string): string | null {
  const dirs = [
    process.env.PG_BIN,
    ...safeList('/usr/lib/postgresql')
      .sort()
      .reverse()
      .map((v) => `/usr/lib/postgresql/${v}/bin`),
  ];
  for (const d of [...dirs, ...(process.env.PATH ?? '').split(':')]) if (d && existsSync(path.join(d, name))) return path.join(d, name);
  return null;
}

/** pgbench, found as findPgTool finds it; null when there is none. */
export function findPgbench(): string | null {
  return findPgTool('pgbench');
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export interface PgbenchRun {
  url: string;
  /** A custom script; none: pgbench's built-in TPC-B-like transaction. */
  script?: string;
  clients: number;
  seconds: number;
  scriptDir: string;
  /** A taskset CPU list to run pgbench on (bench/pinning.ts); none: wherever this process may run. */
  cpus?: string;
}

/** TPS of a pgbench run (excluding connection time). */
export async function pgbenchTps(bin: string, r: PgbenchRun): Promise<number> {
  let workload = ['-b', 'tpcb-like'];
  if (r.script !== undefined) {
    const file = path.join(r.scriptDir, `script-${process.hrtime.bigint()}.sql`);
    await writeFile(file, r.script);
    workload = ['-f', file];
  }
  const args = ['-n', '-c', String(r.clients), '-j', String(Math.min(r.clients, 2)), '-T', String(r.seconds), ...workload, ...connArgs(r.url)];
  const [file, argv] = r.cpus === undefined ? [bin, args] : ['taskset', ['-c', r.cpus, bin, ...args]];
  const { stdout } = await run(file, argv, { maxBuffer: 16 * 1024 * 1024 });
  const m = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(stdout);
  if (!m) throw new Error(`cannot read pgbench's tps from:\n${stdout}`);
  return Number(m[1]);
}

/** The connection arguments pgbench takes (-h -p -U dbname) for a URL without a password. */
function connArgs(url: string): string[] {
  const u = new URL(url);
  return ['-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), decodeURIComponent(u.pathname.slice(1))];
}

/**
 * `pgbench -i -s scale -I dtgp`: pgbench's tables, filled client-side, with
 * primary keys (pgbench_accounts gets 100,000 rows per unit of scale).
 */
export async function pgbenchInit(bin: string, url: string, scale: number): Promise<void> {
  await run(bin, ['-i', '-q', '-s', String(scale), '-I', 'dtgp', ...connArgs(url)], { maxBuffer: 16 * 1024 * 1024 });
}
