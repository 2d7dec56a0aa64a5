import cron from 'node-cron';
import type { Config } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { CapraError, errorMessage } from '../db/errors.js';
import { purgeDeltas } from '../sync/purge.js';
import type { Logger } from '../util/logger.js';
import { LaneWorker } from './lane-worker.js';
import { KickListener } from './listener.js';
import { Recorder } from './recorder.js';

export interface DaemonOptions {
  retryBaseMs?: number;
  retryCapMs?: number;
  purgeEveryMs?: number;
}

/**
 * The replication daemon of one job: a worker per lane, a kick listener per
 * source node, cron and poll timers that wake workers, and the delta purge.
 * stop() stops taking new work and lets every run in progress finish.
 */
export class Daemon {
  private readonly conns: Connections;
  private readonly recorder: Recorder;
  private readonly workers: LaneWorker[] = [];
  private readonly listeners: KickListener[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly cronTasks: { stop(): void | Promise<void> }[] = [];
  private stopped: Promise<void> | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly logger: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    this.conns = new Connections(cfg, 'capra-sync', logger);
    this.recorder = new Recorder(this.conns, logger);
  }

  start(): void {
    for (const sync of Object.values(this.cfg.syncs)) {
      if (sync.sources.length > 1) {
        throw new CapraError(`sync ${sync.name}: multi-master syncs (more than one source) are not supported by this version`);
      }
    }
    const bySource = new Map<string, LaneWorker[]>();
    for (const sync of Object.values(this.cfg.syncs)) {
      const syncWorkers: LaneWorker[] = [];
      for (const source of sync.sources) {
        for (const target of receiversOf(sync, source)) {
          const w = new LaneWorker({ job: this.cfg.name, sync, source, target }, this.conns, this.recorder, this.logger, {
            batchRows: this.cfg.batchRows,
            retryBaseMs: this.opts.retryBaseMs ?? 500,
            retryCapMs: this.opts.retryCapMs ?? 10_000,
          });
          this.workers.push(w);
          syncWorkers.push(w);
          bySource.set(source, [...(bySource.get(source) ?? []), ...(sync.kick.notify ? [w] : [])]);
        }
      }
      if (sync.kick.cron) {
        this.cronTasks.push(cron.schedule(sync.kick.cron, () => syncWorkers.forEach((w) => w.wake()), { name: `capra-${this.cfg.name}-${sync.name}` }));
      }
    }
    for (const [source, workers] of bySource) {
      if (workers.length === 0) continue;
      const l = new KickListener(this.conns, source, `capra_${this.cfg.name}`, () => workers.forEach((w) => w.wake()), this.logger);
      this.listeners.push(l);
      l.start();
    }
    this.timers.push(setInterval(() => this.workers.forEach((w) => w.wake()), this.cfg.pollSeconds * 1000));
    this.timers.push(setInterval(() => void this.purge([...bySource.keys()]), this.opts.purgeEveryMs ?? 60_000));
    for (const w of this.workers) w.start();
    this.logger.info({ lanes: this.workers.length }, 'daemon started');
  }

  private async purge(sources: string[]): Promise<void> {
    for (const node of sources) {
      try {
        const n = await this.conns.with(node, purgeDeltas);
        if (n > 0) this.logger.debug({ node, deleted: n }, 'purged applied deltas');
      } catch (err) {
        this.logger.debug({ node, err: errorMessage(err) }, 'purge skipped');
      }
    }
  }

  /** Graceful: no new runs; runs in progress finish; connections close. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.logger.info('stopping: finishing runs in progress');
      for (const t of this.timers) clearInterval(t);
      await Promise.all(this.cronTasks.map((t) => t.stop()));
      await Promise.all([...this.workers.map((w) => w.stop()), ...this.listeners.map((l) => l.stop())]);
      await this.recorder.drain();
      await this.conns.close();
      this.logger.info('stopped');
    })();
    return this.stopped;
  }
}
