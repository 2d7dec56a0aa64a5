import type { SyncConfig } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { errorNode, isConnectionError } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { seedLane } from '../clone/seed.js';
import { ConflictResolver } from '../sync/conflict.js';
import { SequenceKeeper } from '../sync/sequence-keeper.js';
import { DOWN_RETRY_MS, DownNodes } from '../sync/down-nodes.js';
import { type SwapState, runSwap } from '../sync/swap.js';
import { sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import type { Recorder } from './recorder.js';
import { afterRun, batchSize } from '../sync/batch-size.js';
import { type LaneLabels, Worker, type WorkerOptions } from './worker.js';

/** Runs a multi-master (swap) sync: all of its nodes in each run (see runSwap). */
export class SwapWorker extends Worker {
  private readonly state: SwapState = { roles: new Map(), down: new DownNodes(this.conns, () => this.wake(), this.abort.signal) };
  private readonly resolver: ConflictResolver;
  private seeded = false;
  private readonly warnedRole = new Set<string>();
  private wasDown = new Set<string>();
  /** Carries sequences to the pure targets and warns when the sources' sequences could hand out the same values. */
  private readonly sequences: SequenceKeeper;

  constructor(
    private readonly job: string,
    sync: SyncConfig,
    conns: Connections,
    private readonly recorder: Recorder,
    logger: Logger,
    opts: WorkerOptions,
  ) {
    super(sync, conns, logger.child({ sync: sync.name }), opts);
    this.resolver = new ConflictResolver(conns, sync);
    this.sequences = new SequenceKeeper(conns, sync, this.log);
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.sequences.stop();
  }

  get lanes(): LaneLabels[] {
    return this.sync.sources.flatMap((source) => receiversOf(this.sync, source).map((target) => ({ sync: this.sync.name, source, target })));
  }

  /**
   * copy_data for every (source, receiver) pair, once; then the relids of
   * each source that every receiver has. A pair with a node down is left for
   * later: seeding is tried again on each run until every pair is done.
   */
  private async seed(): Promise<void> {
    if (this.sync.copyData === 'never') {
      this.seeded = true;
      return;
    }
    const seeded = new Map<string, Set<number>>();
    let complete = true;
    for (const { source, target } of this.lanes) {
      let relids: Set<number> | null;
      if (this.state.down.has(source) || this.state.down.has(target)) {
        complete = false;
        continue;
      }
      try {
        relids = await seedLane(this.conns, { job: this.job, sync: this.sync, source, target }, this.log, this.abort.signal);
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        const node = errorNode(err);
        if (node !== undefined && this.sync.sources.concat(this.sync.targets).includes(node)) this.state.down.mark(node, errorMessage(err));
        complete = false;
        continue;
      }
      if (!relids) continue;
      const have = seeded.get(source);
      seeded.set(source, have ? new Set([...have].filter((r) => relids.has(r))) : relids);
    }
    this.state.seededRelids = seeded;
    this.seeded = complete;
  }

  protected async runUntilDone(started: Date): Promise<number> {
    const rows = new Map<string, number>();
    let deltas = 0;
    let down = new Map<string, string>();
    for (let seededNow = false; ; ) {
      if (!this.seeded && !seededNow) {
        await this.seed();
        seededNow = true;
      }
      const batchRows = batchSize(this.opts.batchRows, this.state);
      const r = await runSwap(this.conns, { job: this.job, sync: this.sync, batchRows, state: this.state, resolver: this.resolver });
      afterRun(this.state, r.more);
      if (r.unseeded) {
        // Seeded just now, every pair: the table must be missing from the metadata database. (A pair
        // left for later because a node was down, and that node is back: seed again.)
        if (seededNow && this.seeded) {
          throw new CapraError(
            `sync ${this.sync.name}: a table tracked on a source is not registered in the metadata database (is capra add-triggers still running? if it failed, run it again)`,
          );
        }
        this.seeded = false;
        seededNow = false;
        continue;
      }
      for (const [lane, n] of r.rows) rows.set(lane, (rows.get(lane) ?? 0) + n);
      deltas += r.deltas;
      down = r.down ?? new Map();
      if (r.conflicts.length > 0) {
        this.recorder.conflicts(r.conflicts);
        for (const c of r.conflicts) {
          this.log.info({ table: c.table, key: c.key, rule: c.rule, decision: c.decision, changedOn: c.versions.map((v) => v.db) }, 'conflict settled');
        }
      }
      if (r.deltas > 0) this.log.info({ deltas: r.deltas, conflicts: r.conflicts.length, tables: r.tables, more: r.more }, 'applied batch');
      else this.log.debug('run: nothing to apply');
      if (!r.more || this.stopping || this.paused) break;
      // A receiver was left behind by a user's write to a key being applied: give the writer a moment.
      if (r.behind) await sleep(10 + Math.random() * 40, this.abort.signal);
    }
    for (const [db, role] of this.state.roles) {
      if (role.replicaRole === false && !this.warnedRole.has(db)) {
        this.log.warn({ node: db }, 'the node refused session_replication_role = replica: its own triggers and foreign keys fire for applied rows');
        this.warnedRole.add(db);
      }
    }
    const ended = new Date();
    for (const [db, error] of down) {
      if (!this.wasDown.has(db)) this.log.warn({ node: db, err: error }, 'node unreachable: the others replicate without it; it catches up when it is back');
    }
    for (const db of this.wasDown) if (!down.has(db)) this.log.info({ node: db }, 'node reachable again');
    this.wasDown = new Set(down.keys());
    // A pair's initial copy was left for later (a node was out): try again soon. (A node that is
    // out wakes the sync itself when it answers again: see DownNodes.)
    if (!this.seeded) this.wakeIn(DOWN_RETRY_MS);
    for (const l of this.lanes) {
      const error = down.get(l.source) ?? down.get(l.target);
      if (error !== undefined) this.recorder.record({ ...l, started, ended, rows: 0, error });
      else
        this.recorder.record({
          ...l,
          started,
          ended,
          rows: rows.get(`${l.source}>${l.target}`) ?? 0,
          replicaRole: this.state.roles.get(l.target)?.replicaRole,
        });
    }
    void this.sequences.maybeRun(); // off the run loop: a kick meanwhile is not held up
    return deltas;
  }

  protected recordFailure(started: Date, error: string, table: string | undefined): void {
    const ended = new Date();
    for (const l of this.lanes) this.recorder.record({ ...l, started, ended, rows: 0, error, errorTable: table });
  }
}
