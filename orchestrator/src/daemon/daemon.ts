import cron from 'node-cron';
import type { Config } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { KICK_LINGER_MS, KICK_LINGER_STEP_MS, RUN_GAP_MAX_MS, RUN_GAP_MS } from '../db/kick-timing.js';
import { purgeDeltas } from '../sync/purge.js';
import type { Logger } from '../util/logger.js';
import { JobLock } from './job-lock.js';
import { CloneRunner } from './clone-runner.js';
import { scheduleFullcopies } from './fullcopy.js';
import { LaneWorker } from './lane-worker.js';
import { SwapWorker } from './swap-worker.js';
import type { Worker } from './worker.js';
import { KickListener } from './listener.js';
import { ControlListener, PauseGate } from './control-listener.js';
import { lanePending } from '../sync/lane-pending.js';
import { Metrics } from './metrics.js';
import { differing } from '../compare/compare.js';
import { scheduleCompare } from '../compare/schedule.js';
import { Recorder } from './recorder.js';

function wakeAll(workers: readonly Worker[]): void {
  for (const w of workers) w.wake();
}

export interface DaemonOptions {
  retryBaseMs?: number;
  retryCapMs?: number;
  purgeEveryMs?: number;
  /** How often a standby tries to take the job lock. */
  standbyRetryMs?: number;
  /** How often the clone queue is checked when no NOTIFY arrives. */
  cloneCheckMs?: number;
  /** A worker's runs start at least this far apart (default RUN_GAP_MS). */
  runGapMs?: number;
  /** How far apart they may grow under heavy writes (default RUN_GAP_MAX_MS). */
  runGapMaxMs?: number;
}

export type DaemonState = 'standby' | 'active' | 'stopped';

/**
 * Everything that works for one version of the config: a worker per lane, a
 * kick listener per source node, cron and poll timers, the delta purge.
 * Replaced whole on reload; positions live in the databases, so nothing is lost.
 */
class Generation {
  readonly conns: Connections;
  readonly workers: Worker[] = [];
  private readonly recorder: Recorder;
  private readonly clones: CloneRunner;
  private readonly listeners: (KickListener | ControlListener)[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly cronTasks: { stop(): void | Promise<void> }[] = [];
  /** Workers of a kicked source, and until when to keep waking them. */
  private readonly linger = new Map<Worker[], number>();

  constructor(
    readonly cfg: Config,
    private readonly logger: Logger,
    private readonly opts: DaemonOptions,
    private readonly metrics: Metrics,
    private readonly pauses: PauseGate,
  ) {
    this.conns = new Connections(cfg, 'capra-sync', logger, { reportHealth: true });
    this.recorder = new Recorder(this.conns, logger, (r) =>
      metrics.runFinished({ sync: r.sync, source: r.source, target: r.target }, { rows: r.rows, error: r.error }),
    );
    this.clones = new CloneRunner(this.conns, cfg, logger, opts.cloneCheckMs);
  }

  start(): void {
    const bySource = new Map<string, Worker[]>();
    const bySync = new Map<string, Worker[]>();
    const workerOpts = {
      batchRows: this.cfg.batchRows,
      retryBaseMs: this.opts.retryBaseMs ?? 500,
      retryCapMs: this.opts.retryCapMs ?? 10_000,
      paused: (sync: string) => this.pauses.isPaused(sync),
      runGapMs: this.opts.runGapMs ?? RUN_GAP_MS,
      runGapMaxMs: this.opts.runGapMaxMs ?? RUN_GAP_MAX_MS,
    };
    for (const sync of Object.values(this.cfg.syncs)) {
      const syncWorkers: Worker[] = [];
      const add = (source: string, w: Worker): void => {
        if (!this.workers.includes(w)) this.workers.push(w);
        if (!syncWorkers.includes(w)) syncWorkers.push(w);
        bySource.set(source, [...(bySource.get(source) ?? []), ...(sync.kick.notify ? [w] : [])]);
      };
      if (sync.sources.length > 1) {
        // Multi-master: one worker runs all of the sync's nodes together; a kick from any source wakes it.
        const w = new SwapWorker(this.cfg.name, sync, this.conns, this.recorder, this.logger, workerOpts);
        for (const source of sync.sources) add(source, w);
      } else {
        for (const source of sync.sources) {
          for (const target of receiversOf(sync, source))
            add(source, new LaneWorker({ job: this.cfg.name, sync, source, target }, this.conns, this.recorder, this.logger, workerOpts));
        }
      }
      bySync.set(sync.name, syncWorkers);
      if (sync.kick.cron) {
        this.cronTasks.push(cron.schedule(sync.kick.cron, () => wakeAll(syncWorkers), { name: `capra-${this.cfg.name}-${sync.name}` }));
      }
      if (sync.compare) {
        this.cronTasks.push(
          scheduleCompare(this.cfg.name, sync, this.conns, this.logger, (name, results, at) =>
            this.metrics.setCompare(
              name,
              results.map((r) => [r.table, r.node, differing(r)]),
              at,
            ),
          ),
        );
      }
    }
    // Tables copied whole on a schedule (tables.options fullcopy), through the clone queue.
    this.cronTasks.push(...scheduleFullcopies(this.cfg, this.conns, this.logger));
    for (const [source, workers] of bySource) {
      if (workers.length === 0) continue;
      const onKick = (): void => {
        wakeAll(workers);
        this.linger.set(workers, Date.now() + KICK_LINGER_MS);
      };
      const l = new KickListener(this.conns, source, `capra_${this.cfg.name}`, onKick, this.logger);
      this.listeners.push(l);
      l.start();
    }
    // capra kick, pause and resume, from wherever the CLI runs (daemon/control.ts).
    const control = new ControlListener(
      this.conns,
      this.cfg.name,
      this.pauses,
      { wake: (syncs) => wakeAll(syncs === null ? this.workers : syncs.flatMap((s) => bySync.get(s) ?? [])) },
      this.logger,
    );
    this.listeners.push(control);
    control.start();
    // The linger: the commits whose kick was skipped (db/kick-timing.ts).
    this.timers.push(
      setInterval(() => {
        const now = Date.now();
        for (const [workers, until] of this.linger) {
          if (until < now) this.linger.delete(workers);
          else wakeAll(workers);
        }
      }, KICK_LINGER_STEP_MS),
    );
    this.timers.push(setInterval(() => wakeAll(this.workers), this.cfg.pollSeconds * 1000));
    this.timers.push(setInterval(() => void this.purge([...bySource.keys()]), this.opts.purgeEveryMs ?? 60_000));
    for (const w of this.workers) w.start();
    this.clones.start();
    this.logger.info({ workers: this.workers.length }, 'lanes started');
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

  /** No new runs; runs in progress finish; connections close. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.all(this.cronTasks.map((t) => t.stop()));
    await Promise.all([...this.workers.map((w) => w.stop()), ...this.listeners.map((l) => l.stop()), this.clones.stop()]);
    await this.recorder.drain();
    await this.conns.close();
  }
}

/**
 * The replication daemon of one job. It works only while it holds the job's
 * lock in the metadata database (standby otherwise), reloads its config
 * without losing work, and stops gracefully: no new runs, runs in progress
 * finish.
 */
export class Daemon {
  readonly metrics: Metrics;
  private gen: Generation | null = null;
  private lock: JobLock | null = null;
  private metaConns: Connections | null = null;
  private active = false;
  /** Which syncs are paused; kept across reloads, so a reload does not hold every sync until it is read again. */
  private readonly pauses = new PauseGate();
  private stopped: Promise<void> | null = null;
  /** Serialises activation, deactivation and reload. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private cfg: Config,
    private readonly logger: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    this.metrics = new Metrics(cfg.name);
  }

  get state(): DaemonState {
    return this.stopped ? 'stopped' : this.active ? 'active' : 'standby';
  }

  get config(): Config {
    return this.cfg;
  }

  /** The workers now running (none in standby). */
  get workers(): readonly Worker[] {
    return this.gen?.workers ?? [];
  }

  start(): void {
    this.metaConns = new Connections(this.cfg, 'capra-sync', this.logger);
    this.lock = new JobLock(
      this.metaConns,
      this.cfg.name,
      {
        acquired: () => void this.serially(async () => this.activate()),
        lost: () => this.serially(async () => this.deactivate()),
      },
      this.logger,
      this.opts.standbyRetryMs,
    );
    this.lock.start();
    this.logger.info('daemon started');
  }

  private serially(fn: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(fn, fn);
    return this.queue;
  }

  private activate(): void {
    if (this.stopped || this.gen) return;
    this.active = true;
    this.metrics.setActive(true);
    this.pauses.forget();
    this.gen = new Generation(this.cfg, this.logger, this.opts, this.metrics, this.pauses);
    this.gen.start();
  }

  private async deactivate(): Promise<void> {
    this.active = false;
    this.metrics.setActive(false);
    const gen = this.gen;
    this.gen = null;
    await gen?.stop();
  }

  /** Switches to a new config: the running generation finishes its runs, a new one starts. */
  reload(cfg: Config): Promise<void> {
    return this.serially(async () => {
      if (cfg.name !== this.cfg.name || cfg.metadata !== this.cfg.metadata) {
        throw new CapraError('reload cannot change the job name or its metadata database: restart instead');
      }
      this.cfg = cfg;
      if (!this.gen) return;
      const before = this.gen.workers.flatMap((w) => w.lanes);
      await this.gen.stop();
      this.gen = new Generation(cfg, this.logger, this.opts, this.metrics, this.pauses);
      this.gen.start();
      const now = new Set(this.gen.workers.flatMap((w) => w.lanes).map((l) => JSON.stringify(l)));
      for (const l of before) if (!now.has(JSON.stringify(l))) this.metrics.forgetLane(l);
      this.logger.info('reloaded');
    });
  }

  /**
   * Pending rows and lag of every lane, for a metrics scrape. Each lane's
   * query is bounded in time, so a node that hangs cannot hold scrapes back;
   * its figures are then left out (unknown).
   */
  async refreshMetrics(timeoutMs = 3000): Promise<void> {
    const gen = this.gen;
    if (!gen) return;
    await Promise.all(
      gen.workers
        .flatMap((w) => w.lanes)
        .map(async (labels) => {
          const { sync, source, target } = labels;
          const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), timeoutMs).unref());
          const p = await Promise.race([lanePending(gen.conns, this.cfg.name, sync, source, target).catch(() => null), timeout]);
          this.metrics.setPending(labels, p?.rows ?? null, p?.lagSeconds ?? null);
        }),
    );
    const conflicts = await gen.conns
      .with(Connections.META, (c) => c.query<{ sync: string; n: string }>('SELECT sync, count(*) AS n FROM repl.conflict GROUP BY sync'))
      .catch(() => null);
    for (const sync of Object.keys(this.cfg.syncs)) {
      if (conflicts) this.metrics.setConflicts(sync, Number(conflicts.rows.find((r) => r.sync === sync)?.n ?? 0));
    }
  }

  /** Graceful: no new runs; runs in progress finish; connections close. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.logger.info('stopping: finishing runs in progress');
      await this.serially(async () => this.deactivate());
      await this.lock?.stop();
      await this.metaConns?.close();
      this.logger.info('stopped');
    })();
    return this.stopped;
  }
}
