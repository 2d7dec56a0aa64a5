import type { SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { type SequenceReport, type SyncSequencesOptions, syncSequences } from './sequences.js';

/**
 * Runs syncSequences at most once per interval, for callers that finish runs
 * often (a lane worker after each run). A call inside the interval schedules
 * one trailing run at its end, so the last change is carried without waiting
 * for the next run. Each distinct warning is logged once; a failure is
 * logged, never thrown: sequences must not stall the rows.
 */
export class SequenceKeeper {
  private lastRun = -Infinity;
  private running: Promise<SequenceReport | null> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly warned = new Set<string>();
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(
    private readonly conns: Connections,
    private readonly sync: SyncConfig,
    logger: Logger,
    private readonly opts: SyncSequencesOptions & { intervalMs?: number } = {},
  ) {
    this.log = logger.child({ sync: sync.name });
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  /** Runs now unless it ran less than the interval ago (then later); the report, or null when it did not run now or failed. */
  async maybeRun(): Promise<SequenceReport | null> {
    if (this.stopped) return null;
    const wait = this.lastRun + this.intervalMs - Date.now();
    if (wait > 0 || this.running) {
      this.schedule(wait > 0 ? wait : this.intervalMs);
      return null;
    }
    this.lastRun = Date.now();
    this.running = this.runOnce();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  /** No more runs; waits for the one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.maybeRun();
    }, ms);
    this.timer.unref();
  }

  private async runOnce(): Promise<SequenceReport | null> {
    try {
      const report = await syncSequences(this.conns, this.sync, this.log, this.opts);
      for (const w of report.warnings) this.warnOnce(w);
      if (report.set > 0) this.log.debug({ set: report.set }, 'sequences carried');
      return report;
    } catch (err) {
      this.warnOnce(`sync ${this.sync.name}: carrying sequences failed: ${errorMessage(err)}`);
      return null;
    }
  }

  private warnOnce(msg: string): void {
    if (this.warned.has(msg)) return;
    this.warned.add(msg);
    this.log.warn(msg);
  }
}
