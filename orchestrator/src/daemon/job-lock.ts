import { hostname } from 'node:os';
import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../db/errors.js';
import { sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';

/** Advisory lock class of job locks (two-int form: class, hashtext(job name)). */
export const JOB_LOCK_CLASS = 1130459250;

/** application_name of the session that holds a job's lock: names the daemon holding it. */
export function lockHolderName(pid: number = process.pid): string {
  return `capra-active ${pid}@${hostname()}`.slice(0, 63);
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
export class JobLock {
  private client: pg.Client | null = null;
  private stopping = false;
  private readonly abort = new AbortController();
  private done: Promise<void> | null = null;

  constructor(
    private readonly conns: Connections,
    private readonly job: string,
    private readonly events: { acquired(): void; lost(): Promise<void> },
    private readonly logger: Logger,
    private readonly retryMs = 1000,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.client?.end().catch(() => {});
    await this.done;
  }

  private async loop(): Promise<void> {
    let standbyLogged = false;
    while (!this.stopping) {
      try {
        const client = await this.conns.dedicated('(metadata)');
        this.client = client;
        const closed = new Promise<void>((resolve) => {
          client.once('end', resolve);
          client.once('error', () => resolve());
        });
        await client.query(`SELECT set_config('application_name', $1, false)`, [lockHolderName()]);
        for (;;) {
          if (this.stopping) return;
          const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [JOB_LOCK_CLASS, this.job]);
          if (r.rows[0]?.ok) break;
          if (!standbyLogged) this.logger.info('standby: another daemon of this job is active');
          standbyLogged = true;
          await sleep(this.retryMs, this.abort.signal);
        }
        standbyLogged = false;
        this.logger.info('active: holding the job lock');
        this.events.acquired();
        await closed;
        this.client = null;
        if (this.stopping) return;
        this.logger.warn('lost the job lock (metadata connection closed): stopping work');
        await this.events.lost();
      } catch (err) {
        this.client?.end().catch(() => {});
        this.client = null;
        if (this.stopping) return;
        this.logger.warn({ err: errorMessage(err) }, 'cannot reach the metadata database for the job lock; retrying');
      }
      await sleep(this.retryMs, this.abort.signal);
    }
  }
}
