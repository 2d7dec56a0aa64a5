import type { SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { SQLSTATE, errorTable, runFailureMessage, sqlState } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { describeFailure, runExceptionHandlers } from '../sync/exception.js';
import { backoffMs, sleep } from '../util/backoff.js';
import { BUSY_CHANGES_PER_SECOND } from '../db/kick-timing.js';
import type { Logger } from '../util/logger.js';

export interface WorkerOptions {
  batchRows: number;
  retryBaseMs: number;
  retryCapMs: number;
  /** The sync is paused (capra pause): no run starts, a run in progress stops after its batch. */
  paused?: (sync: string) => boolean;
  /** A run starts at least this long after the previous one started (see RUN_GAP_MS in db/kick-timing.ts); 0: at once. */
  runGapMs?: number;
  /** Under heavy writes the gap doubles run by run up to this (see RUN_GAP_MAX_MS); unset: it stays runGapMs. */
  runGapMaxMs?: number;
}

export interface LaneLabels {
  sync: string;
  source: string;
  target: string;
}

/** Repairs in a row an exception handler may claim before the worker backs off anyway. */
const MAX_REPAIRS = 3;
/** Serialization failures and deadlocks in a row retried at once (a user's write met the run's), before backing off. */
const MAX_QUICK_RETRIES = 20;

/** A serialization failure, deadlock or key clash: the run met a user's transaction; trying again soon is the cure. */
function isTransient(err: unknown): boolean {
  if (err instanceof CapraError && err.retrySoon) return true;
  const code = sqlState((err as { cause?: unknown } | null)?.cause ?? err) ?? sqlState(err);
  return code === SQLSTATE.serializationFailure || code === SQLSTATE.deadlockDetected;
}

/**
 * The loop every worker shares: it runs whenever it is woken (kick, cron,
 * poll), until its backlog is gone. A failure is shown to the sync's
 * exception handlers, then recorded and retried with backoff, for as long as
 * it takes: a node that comes back is caught up without a restart, and one
 * failing worker never holds up another.
 */
export abstract class Worker {
  private wanted = true; // run once at start: there may be a backlog
  protected stopping = false;
  private wakeUp: (() => void) | null = null;
  protected readonly abort = new AbortController();
  private loopDone: Promise<void> | null = null;

  constructor(
    readonly sync: SyncConfig,
    protected readonly conns: Connections,
    protected readonly log: Logger,
    protected readonly opts: WorkerOptions,
  ) {}

  /** The lanes (source, target pairs) this worker moves changes along, for metrics and status. */
  abstract get lanes(): LaneLabels[];

  /**
   * Runs batches until there is nothing left; returns the changes (delta
   * rows) it applied: only runs that applied any are kept runGapMs apart,
   * and how many tells how busy the sources are (nextGap).
   */
  protected abstract runUntilDone(started: Date): Promise<number>;

  /** The sync is paused: apply nothing more (the backlog waits for capra resume, which wakes the worker). */
  protected get paused(): boolean {
    return this.opts.paused?.(this.sync.name) ?? false;
  }

  /** Records a failed run. */
  protected abstract recordFailure(started: Date, error: string, table: string | undefined): void;

  start(): void {
    this.loopDone = this.loop();
  }

  wake(): void {
    this.wanted = true;
    this.wakeUp?.();
  }

  private wakeTimer: NodeJS.Timeout | null = null;

  /** Wakes the worker after `ms` unless it stops first (one timer at a time). */
  protected wakeIn(ms: number): void {
    if (this.wakeTimer || this.stopping) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wake();
    }, ms);
  }

  /** Finishes the run in progress (if any), then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.abort.abort();
    this.wakeUp?.();
    await this.loopDone;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let repairs = 0;
    let quick = 0;
    let lastStart = 0;
    let gapMs = this.opts.runGapMs ?? 0;
    while (!this.stopping) {
      if (!this.wanted) {
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        this.wakeUp = null;
        continue;
      }
      // After a run that applied changes, kicks that come while it waits are taken by the one run that follows.
      const gap = lastStart + gapMs - Date.now();
      if (gap > 0 && !(await sleep(gap, this.abort.signal))) break;
      this.wanted = false;
      if (this.paused) continue;
      const started = new Date();
      try {
        // A run that found nothing (a linger step when all is quiet) holds up no kick after it.
        const deltas = await this.runUntilDone(started);
        if (deltas > 0) {
          gapMs = this.nextGap(gapMs, deltas, started.getTime() - lastStart);
          lastStart = started.getTime();
        } else gapMs = this.opts.runGapMs ?? 0;
        if (failures > 0) this.log.info({ after: failures }, 'recovered');
        failures = repairs = quick = 0;
      } catch (err) {
        // An initial copy cut short by the stop is no failure: the next start copies again.
        if (this.stopping) break;
        this.wanted = true;
        if (isTransient(err) && quick < MAX_QUICK_RETRIES) {
          quick++;
          this.log.debug({ err: errorMessage(err) }, 'run met a concurrent write; retrying');
          await sleep(10 + Math.random() * 50, this.abort.signal);
          continue;
        }
        if (await this.repaired(err, repairs)) {
          repairs++;
          continue;
        }
        failures++;
        const msg = runFailureMessage(err);
        this.log.warn({ err: msg, attempt: failures }, 'run failed; will retry');
        this.recordFailure(started, msg, errorTable(err));
        await sleep(backoffMs(failures - 1, this.opts.retryBaseMs, this.opts.retryCapMs), this.abort.signal);
      }
    }
  }

  /**
   * The gap after a run that applied `deltas` changes, given the one before
   * it and the time since the previous such run started: doubled (up to
   * runGapMaxMs) when the sources wrote BUSY_CHANGES_PER_SECOND or more
   * meanwhile, else runGapMs again (see RUN_GAP_MAX_MS).
   */
  private nextGap(gapMs: number, deltas: number, sinceLastMs: number): number {
    const base = this.opts.runGapMs ?? 0;
    const max = this.opts.runGapMaxMs ?? base;
    if (max <= base || sinceLastMs <= 0) return base;
    const perSecond = (deltas * 1000) / sinceLastMs;
    return perSecond >= BUSY_CHANGES_PER_SECOND ? Math.min(max, Math.max(base, gapMs * 2)) : base;
  }

  /** Shows a failure to the sync's exception handlers; true when one repaired its cause. */
  private async repaired(err: unknown, repairs: number): Promise<boolean> {
    if (this.sync.exceptionHandlers.length === 0 || repairs >= MAX_REPAIRS) return false;
    const failure = describeFailure(this.sync.name, err);
    if (!failure) return false;
    try {
      const by = await runExceptionHandlers(this.conns, this.sync, failure);
      if (by) this.log.info({ handler: by, node: failure.node, table: failure.table, err: failure.message }, 'exception handler repaired; retrying');
      return by !== null;
    } catch (handlerErr) {
      this.log.warn({ err: errorMessage(handlerErr) }, 'exception handler failed');
      return false;
    }
  }
}
