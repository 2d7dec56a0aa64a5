import { hostname } from 'node:os';
import type pg from 'pg';
import { JOB_LOCK_CLASS } from '../db/advisory-locks.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { SessionLoop } from './session-loop.js';

/** application_name of the session that holds a job's lock: names the daemon holding it. */
export function lockHolderName(pid: number = process.pid): string {
  return `capra-active ${pid}@${hostname()}`.slice(0, 63);
}

/** Which daemon holds the job's lock (pid@host), from the metadata database; null: none is active. */
export async function activeHolder(meta: pg.ClientBase, job: string): Promise<string | null> {
  const r = await meta.query<{ app: string }>(
    `SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2`,
    [JOB_LOCK_CLASS, job],
  );
  return /^capra-active (.+)$/.exec(r.rows[0]?.app ?? '')?.[1] ?? null;
}

/**
 * High availability: of all daemons of one job (one metadata database), the
 * one holding the job's advisory lock there is active; the others stand by,
 * trying again every `retryMs`. The lock lives as long as its session, so a
 * daemon killed with -9 frees it at once and a standby takes over within
 * `retryMs`; a daemon that loses its connection loses the lock and stops work
 * before trying to get it back. Runs are fenced on the targets too: the
 * position row is locked and compared, so a late run of a deposed daemon
 * cannot apply a batch twice.
 */
export class JobLock extends SessionLoop {
  private standbyLogged = false;

  constructor(
    conns: Connections,
    private readonly job: string,
    private readonly events: { acquired(): void; lost(): Promise<void> },
    logger: Logger,
    private readonly retryMs = 1000,
  ) {
    super(conns, Connections.META, logger);
  }

  protected async use(client: pg.Client, closed: Promise<void>): Promise<void> {
    await client.query(`SELECT set_config('application_name', $1, false)`, [lockHolderName()]);
    for (;;) {
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [JOB_LOCK_CLASS, this.job]);
      if (r.rows[0]?.ok) break;
      if (!this.standbyLogged) this.logger.info('standby: another daemon of this job is active');
      this.standbyLogged = true;
      if (!(await this.pause(this.retryMs))) return;
    }
    this.standbyLogged = false;
    this.logger.info('active: holding the job lock');
    this.events.acquired();
    await closed;
    if (this.stopping) return;
    this.logger.warn('lost the job lock (metadata connection closed): stopping work');
    await this.events.lost();
  }

  protected retryDelayMs(): number {
    return this.retryMs;
  }

  protected failed(err: unknown): void {
    this.logger.warn({ err: errorMessage(err) }, 'cannot reach the metadata database for the job lock; retrying');
  }
}
