import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CapraError } from '../util/errors.js';

/**
 * Whether process `pid` is running. A process killed a moment ago (kill -9)
 * stays a zombie until its parent reaps it, and kill(pid, 0) still succeeds
 * for it: where /proc tells the process state, a zombie (Z) or dead (X)
 * process is not running.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // Gone since kill(pid, 0), where /proc exists; elsewhere kill(pid, 0) has the say.
    return existsSync('/proc/self/stat');
  }
  // "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
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
