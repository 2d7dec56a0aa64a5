import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * CPU pinning for the writer phase (util-linux `taskset`, always run with an
 * argv array): the writer side (pgbench and the source server) on the first
 * half of the cores, the replication side (the tool's daemon and the target
 * server) on the rest, so that a TPS figure is what the writers pay and not
 * four programs sharing every core. Pinning a process also pins what it forks
 * afterwards (affinity is inherited), so a postmaster pinned after its start
 * takes its later backends with it; its existing children are pinned one by
 * one.
 */
export interface CpuSplit {
  /** taskset CPU lists (`-c`): the writer side's, the replication side's, and every core (to unpin). */
  writer: string;
  replication: string;
  all: string;
}

const list = (from: number, to: number): string => (from === to ? String(from) : `${from}-${to}`);

/** The split of this machine's cores, or why there is none (one core: nothing to pin apart; no taskset). */
export async function cpuSplit(): Promise<CpuSplit | { missing: string }> {
  const n = cpus().length;
  if (n < 2) return { missing: `${n} core: nothing to pin apart` };
  try {
    await run('taskset', ['--version']);
  } catch {
    return { missing: 'taskset (util-linux) not found' };
  }
  const half = Math.floor(n / 2);
  return { writer: list(0, half - 1), replication: list(half, n - 1), all: list(0, n - 1) };
}

/** Sets the affinity of every thread of `pid` (taskset -a -p -c). */
async function pin(pid: number, cpuList: string): Promise<void> {
  await run('taskset', ['-a', '-p', '-c', cpuList, String(pid)]);
}

/** Pids whose parent is `pid`, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The field after the command (which may hold spaces and parentheses) is the state, then the ppid.
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * Pins a server: its postmaster (so later backends inherit the CPUs) and
 * every process it has forked so far (checkpointer, WAL writer, open
 * backends). A child that exits meanwhile is skipped.
 */
export async function pinServer(postmaster: number, cpuList: string): Promise<void> {
  await pin(postmaster, cpuList);
  for (const child of await childrenOf(postmaster)) await pin(child, cpuList).catch(() => {});
}

/**
 * Pins this process (every thread, not its children): the bench's own
 * process hosts Capra's daemon, and what it starts afterwards inherits the
 * CPUs (Bucardo's daemons, through `bucardo start`).
 */
export function pinSelf(cpuList: string): Promise<void> {
  return pin(process.pid, cpuList);
}

/** The postmaster's pid from a data directory's postmaster.pid (its first line). */
export async function postmasterPid(dataDir: string): Promise<number> {
  const pid = Number((await readFile(`${dataDir}/postmaster.pid`, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${dataDir}/postmaster.pid`);
  return pid;
}
