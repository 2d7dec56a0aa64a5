import type { Connections } from '../db/connections.js';
import { CapraError, errorMessage, errorTable } from '../db/errors.js';
import { seedLane } from '../clone/seed.js';
import { type LaneKey, type LaneState, runLane } from '../sync/lane.js';
import { SequenceKeeper } from '../sync/sequences.js';
import { backoffMs, sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import type { Recorder, RunRecord } from './recorder.js';

export interface WorkerOptions {
  batchRows: number;
  retryBaseMs: number;
  retryCapMs: number;
}

/**
 * Runs one lane whenever it is woken (kick, cron, poll), batch after batch
 * until the backlog is gone. A failure is recorded and retried with backoff,
 * for as long as it takes: a node that comes back is caught up without a
 * restart, and one failing lane never holds up another.
 */
export class LaneWorker {
  private wanted = true; // run once at start: there may be a backlog
  private stopping = false;
  private wakeUp: (() => void) | null = null;
  private readonly abort = new AbortController();
  private readonly state: LaneState = {};
  private loopDone: Promise<void> | null = null;
  private warnedRole = false;
  /** copy_data has been seen to for this lane's tables (see seedLane). */
  private seeded = false;
  private readonly log: Logger;
  /** One-way lanes carry the sync's sequences to their target; multi-master ones are kept by their own worker. */
  private readonly sequences: SequenceKeeper | null;

  constructor(
    readonly key: LaneKey,
    private readonly conns: Connections,
    private readonly recorder: Recorder,
    logger: Logger,
    private readonly opts: WorkerOptions,
  ) {
    this.log = logger.child({ sync: key.sync.name, source: key.source, target: key.target });
    this.sequences = key.sync.sources.length === 1 ? new SequenceKeeper(conns, key.sync, this.log, { targets: [key.target] }) : null;
  }

  /** The lane's metric labels. */
  get labels(): { sync: string; source: string; target: string } {
    return { sync: this.key.sync.name, source: this.key.source, target: this.key.target };
  }

  start(): void {
    this.loopDone = this.loop();
  }

  wake(): void {
    this.wanted = true;
    this.wakeUp?.();
  }

  /** Finishes the run in progress (if any), then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    this.wakeUp?.();
    await this.loopDone;
    await this.sequences?.stop();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      if (!this.wanted) {
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        this.wakeUp = null;
        continue;
      }
      this.wanted = false;
      const started = new Date();
      let rows = 0;
      try {
        for (let seededNow = false; ; ) {
          if (!this.seeded) {
            const relids = await seedLane(this.conns, this.key, this.log, this.abort.signal);
            if (relids) this.state.seededRelids = relids;
            this.seeded = seededNow = true;
          }
          const r = await runLane(this.conns, this.key, this.opts.batchRows, this.state);
          if (r.unseeded) {
            // A table was added (add-triggers) since the lane's initial copies: copy it first.
            if (seededNow) {
              throw new CapraError(
                `sync ${this.key.sync.name}: a table tracked on ${this.key.source} is not registered in the metadata database (is capra add-triggers still running? if it failed, run it again)`,
              );
            }
            this.seeded = false;
            continue;
          }
          rows += r.rows;
          if (r.deltas > 0) this.log.info({ deltas: r.deltas, rows: r.rows, tables: r.tables, more: r.more }, 'applied batch');
          else this.log.debug('run: nothing to apply');
          if (!r.more || this.stopping) break;
        }
        if (failures > 0) this.log.info({ after: failures }, 'lane recovered');
        failures = 0;
        if (this.state.replicaRole === false && !this.warnedRole) {
          this.log.warn('the target refused session_replication_role = replica: its own triggers and foreign keys fire for applied rows');
          this.warnedRole = true;
        }
        this.record(started, rows, { replicaRole: this.state.replicaRole });
        // After the rows: the keys the target now holds are what its sequence must pass.
        await this.sequences?.maybeRun();
      } catch (err) {
        // An initial copy cut short by the stop is no failure of the lane: the next start copies again.
        if (this.stopping) break;
        failures++;
        const msg = errorMessage(err);
        const table = errorTable(err);
        this.log.warn({ err: msg, attempt: failures }, 'run failed; will retry');
        this.record(started, rows, { error: msg, errorTable: table });
        this.wanted = true;
        await sleep(backoffMs(failures - 1, this.opts.retryBaseMs, this.opts.retryCapMs), this.abort.signal);
      }
    }
  }

  private record(started: Date, rows: number, extra: Pick<RunRecord, 'error' | 'errorTable' | 'replicaRole'>): void {
    const { sync, source, target } = this.key;
    this.recorder.record({ sync: sync.name, source, target, started, ended: new Date(), rows, ...extra });
  }
}
