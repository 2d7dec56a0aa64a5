import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CapraError } from '../db/errors.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function readPid(file: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Claims the pidfile for this process: refuses, naming the pid, when a live
 * process holds it; a stale one (its process gone) is replaced.
 */
export async function claimPidfile(file: string, pid: number = process.pid): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, `${pid}\n`, { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const other = await readPid(file);
      if (other !== null && other !== pid && isAlive(other)) {
        throw new CapraError(`the job is already running as pid ${other} (pidfile ${file})`);
      }
      await unlink(file).catch(() => {});
    }
  }
  throw new CapraError(`cannot claim pidfile ${file}`);
}

export async function releasePidfile(file: string, pid: number = process.pid): Promise<void> {
  if ((await readPid(file)) === pid) await unlink(file).catch(() => {});
}
