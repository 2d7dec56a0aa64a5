import type { Connections } from '../db/connections.js';
import { CapraError } from '../util/errors.js';
import { seedLane } from '../clone/seed.js';
import { type LaneKey, type LaneState, runLane } from '../sync/lane.js';
import { SequenceKeeper } from '../sync/sequence-keeper.js';
import type { Logger } from '../util/logger.js';
import type { Recorder, RunRecord } from './recorder.js';
import { afterRun, batchSize } from '../sync/batch-size.js';
import { type LaneLabels, Worker, type WorkerOptions } from './worker.js';

export type { WorkerOptions } from './worker.js';

/** Runs one lane of a one-way sync: (sync, source, target). */
export class LaneWorker extends Worker {
  private readonly state: LaneState = {};
  private warnedRole = false;
  /** copy_data has been seen to for this lane's tables (see seedLane). */
  private seeded = false;
  /** Carries the sync's sequences to this lane's target. */
  private readonly sequences: SequenceKeeper;

  constructor(
    readonly key: LaneKey,
    conns: Connections,
    private readonly recorder: Recorder,
    logger: Logger,
    opts: WorkerOptions,
  ) {
    super(key.sync, conns, logger.child({ sync: key.sync.name, source: key.source, target: key.target }), opts);
    this.sequences = new SequenceKeeper(conns, key.sync, this.log, { targets: [key.target] });
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.sequences.stop();
  }

  /** The lane's metric labels. */
  get labels(): LaneLabels {
    return { sync: this.key.sync.name, source: this.key.source, target: this.key.target };
  }

  get lanes(): LaneLabels[] {
    return [this.labels];
  }

  protected async runUntilDone(started: Date): Promise<number> {
    let rows = 0;
    let deltas = 0;
    for (let seededNow = false; ; ) {
      if (!this.seeded) {
        const relids = await seedLane(this.conns, this.key, this.log, this.abort.signal);
        if (relids) this.state.seededRelids = relids;
        this.seeded = seededNow = true;
      }
      const r = await runLane(this.conns, this.key, batchSize(this.opts.batchRows, this.state), this.state);
      afterRun(this.state, r.more);
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
      deltas += r.deltas;
      if (r.deltas > 0) this.log.info({ deltas: r.deltas, rows: r.rows, tables: r.tables, more: r.more }, 'applied batch');
      else this.log.debug('run: nothing to apply');
      if (!r.more || this.stopping || this.paused) break;
    }
    if (this.state.replicaRole === false && !this.warnedRole) {
      this.log.warn('the target refused session_replication_role = replica: its own triggers and foreign keys fire for applied rows');
      this.warnedRole = true;
    }
    this.record(started, rows, { replicaRole: this.state.replicaRole });
    // After the rows: the keys the target now holds are what its sequence must pass.
    void this.sequences.maybeRun(); // off the run loop: a kick meanwhile is not held up
    return deltas;
  }

  protected recordFailure(started: Date, error: string, table: string | undefined): void {
    this.record(started, 0, { error, errorTable: table });
  }

  private record(started: Date, rows: number, extra: Pick<RunRecord, 'error' | 'errorTable' | 'replicaRole'>): void {
    const { sync, source, target } = this.key;
    this.recorder.record({ sync: sync.name, source, target, started, ended: new Date(), rows, ...extra });
  }
}
