import type { Config } from '../config/types.js';
import { executeClone } from '../clone/execute.js';
import { CloneCancelled, claimNextClone, finishClone, nextDueInSeconds, recoverInterrupted } from '../clone/request.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import { sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import { KickListener } from './listener.js';

/** The clone queue's channel in the metadata database (repl.clone and repl.clone_cancel notify it). */
export const CLONE_CHANNEL = 'capra_clone';

/**
 * Carries out queued clones, one at a time, as they fall due: woken by
 * repl.clone's NOTIFY, and checking every checkEveryMs as the safety net. A
 * clone interrupted by a stop is queued again (see recoverInterrupted).
 */
export class CloneRunner {
  private readonly abort = new AbortController();
  private readonly listener: KickListener;
  private wakeUp: (() => void) | null = null;
  private wanted = true;
  private done: Promise<void> | null = null;

  constructor(
    private readonly conns: Connections,
    private readonly cfg: Config,
    private readonly logger: Logger,
    private readonly checkEveryMs = 5_000,
  ) {
    this.listener = new KickListener(conns, Connections.META, CLONE_CHANNEL, () => this.wake(), logger);
  }

  start(): void {
    this.listener.start();
    this.done = this.loop();
  }

  wake(): void {
    this.wanted = true;
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('the daemon is stopping'));
    this.wakeUp?.();
    await Promise.all([this.listener.stop(), this.done]);
  }

  private async loop(): Promise<void> {
    let recovered = false;
    while (!this.abort.signal.aborted) {
      let waitMs = this.checkEveryMs;
      if (this.wanted) {
        this.wanted = false;
        try {
          if (!recovered) {
            const n = await this.conns.with(Connections.META, recoverInterrupted);
            if (n > 0) this.logger.warn({ clones: n }, 'clones interrupted by a stop were queued again');
            recovered = true;
          }
          while (!this.abort.signal.aborted && (await this.runNext()));
          const due = await this.conns.with(Connections.META, nextDueInSeconds);
          if (due !== null) waitMs = Math.min(waitMs, Math.max(50, due * 1000));
        } catch (err) {
          this.logger.warn({ err: errorMessage(err) }, 'clone queue: cannot check; retrying');
        }
      }
      if (this.abort.signal.aborted) break;
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
        void sleep(waitMs, this.abort.signal).then(() => {
          this.wanted = true;
          resolve();
        });
      });
      this.wakeUp = null;
    }
  }

  /** Runs the next due clone, if any; false when there was none. */
  private async runNext(): Promise<boolean> {
    const req = await this.conns.with(Connections.META, claimNextClone);
    if (!req) return false;
    const log = this.logger.child({ clone: req.id });
    log.info({ tables: req.tables.length, dbs: req.dbs }, 'clone started');
    const cascade = req.sync ? (this.cfg.syncs[req.sync]?.cascade ?? false) : false;
    const options = req.sync ? this.cfg.syncs[req.sync]?.tables.options : undefined;
    try {
      const outcome = await executeClone(this.conns, this.cfg.name, req, this.logger, { signal: this.abort.signal, cascade, options });
      await this.conns.with(Connections.META, (c) => finishClone(c, req.id, outcome, outcome === 'cancelled' ? 'cancelled' : undefined));
      log.info({ outcome }, 'clone ended');
    } catch (err) {
      if (this.abort.signal.aborted && !(err instanceof CloneCancelled)) {
        // Stopping: the request stands; the next active daemon runs it again.
        await this.conns.with(Connections.META, (c) => recoverInterrupted(c, req.id)).catch(() => {});
        log.info('clone interrupted by the stop; queued again');
        return false;
      }
      const msg = errorMessage(err);
      log.warn({ err: msg }, 'clone failed');
      await this.conns.with(Connections.META, (c) => finishClone(c, req.id, 'failed', msg));
    }
    return true;
  }
}
