// Fixtures for the hung-node tests: a daemon whose log lines are kept, status
// calls that must answer within 5 s, and barriers on what status and the
// daemon's lane records say of a frozen node.
import type { Test } from 'tap';
import { Daemon } from '../../orchestrator/src/daemon/daemon.js';
import { collectStatus } from '../../orchestrator/src/status/status.js';
import { type Logger, silentLogger } from '../../orchestrator/src/util/logger.js';
import { type Job, testLogger } from './capra.js';
import { sql, waitFor } from './db.js';

/** node_timeout_seconds in these tests. */
export const TIMEOUT_S = 3;

/** A logger that keeps what the daemon warns and tells, as "msg node". */
export function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const keep = (obj: object | string, msg?: string): void => {
    const node = typeof obj === 'object' ? (obj as { node?: string }).node : undefined;
    lines.push(`${msg ?? String(obj)}${node ? ` ${node}` : ''}`);
  };
  const logger: Logger = { debug: () => {}, info: keep, warn: keep, error: keep, child: () => logger };
  return { logger, lines };
}

export function daemonFor(t: Test, job: Job, logger: Logger = testLogger(job.name)): Daemon {
  const d = new Daemon(job.cfg, logger, { retryBaseMs: 100, retryCapMs: 1000 });
  d.start();
  t.teardown(() => d.stop());
  return d;
}

/** The sync ok and every node answering (the in-process daemon has no pidfile, so the job as a whole is never healthy here). */
export const isOk = (st: Awaited<ReturnType<typeof collectStatus>>): boolean => st.syncs[0]!.state === 'ok' && st.unanswered.length === 0;

export const count = async (url: string, table: string): Promise<number> => (await sql(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

/** Status, timed: each call must answer within 5 s whatever the nodes do. */
export async function timedStatus(t: Test, job: Job): Promise<Awaited<ReturnType<typeof collectStatus>>> {
  const started = Date.now();
  const st = await collectStatus(job.cfg, silentLogger);
  const ms = Date.now() - started;
  if (ms >= 5000) t.fail(`a status call took ${ms} ms`);
  return st;
}

/** Waits until status shows every lane touching `node` failing and naming it; returns the seconds it took from `since`. */
export async function statusFailsFor(t: Test, job: Job, node: string, since: number): Promise<number> {
  let seconds = 0;
  await waitFor(
    async () => {
      const st = await timedStatus(t, job);
      const lanes = st.syncs[0]!.lanes;
      const touching = lanes.filter((l) => l.source === node || l.target === node);
      const ok = touching.length > 0 && touching.every((l) => (l.state === 'failing' || l.state === 'unreachable') && (l.error ?? '').includes(node));
      if (ok) seconds = (Date.now() - since) / 1000;
      return ok;
    },
    { what: `status to name ${node} as failing`, intervalMs: 200 },
  );
  t.pass(`status failed, naming ${node}, ${seconds.toFixed(1)} s after the freeze`);
  return seconds;
}

/** The daemon's own record of the lane: failing, with the node not answering. */
export async function laneRecordedHung(job: Job, source: string, target: string, node: string): Promise<void> {
  await waitFor(
    async () => {
      const rows = await sql<{ state: string; error: string | null }>(
        job.cfg.metadata,
        'SELECT state, error FROM repl.lane WHERE source = $1 AND target = $2',
        [source, target],
      );
      return rows[0]?.state === 'failing' && new RegExp(`${node}.*no answer for ${TIMEOUT_S} s`).test(rows[0].error ?? '');
    },
    { what: `the daemon to record ${source} -> ${target} failing with ${node} not answering` },
  );
}
