import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** pgbench from PG_BIN, a system PostgreSQL, or PATH; null when there is none. */
export function findPgbench(): string | null {
  const dirs = [process.env.PG_BIN, ...safeList('/usr/lib/postgresql').sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`)];
  for (const d of dirs) if (d && existsSync(path.join(d, 'pgbench'))) return path.join(d, 'pgbench');
  for (const d of (process.env.PATH ?? '').split(':')) if (d && existsSync(path.join(d, 'pgbench'))) return path.join(d, 'pgbench');
  return null;
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
  script: string;
  clients: number;
  seconds: number;
  scriptDir: string;
}

/** TPS of a custom pgbench script (excluding connection time). */
export async function pgbenchTps(bin: string, r: PgbenchRun): Promise<number> {
  const file = path.join(r.scriptDir, `script-${process.hrtime.bigint()}.sql`);
  await writeFile(file, r.script);
  const u = new URL(r.url);
  const { stdout } = await run(
    bin,
    ['-n', '-c', String(r.clients), '-j', String(Math.min(r.clients, 2)), '-T', String(r.seconds), '-f', file, '-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), decodeURIComponent(u.pathname.slice(1))],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const m = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(stdout);
  if (!m) throw new Error(`cannot read pgbench's tps from:\n${stdout}`);
  return Number(m[1]);
}
