import { receiversOf } from '../orchestrator/src/config/topology.js';
import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import path from 'node:path';
import type { Bucardo } from './bucardo.js';
import { until } from './burst.js';
import { benchJob } from './job.js';
import { postmasterPid } from './pinning.js';

/**
 * The replication tools the bench compares, behind one small interface: a
 * sync over some tables of some databases is set up (triggers installed,
 * nothing running), its daemon started and stopped, and the sync left out
 * of later runs. Each phase of the bench uses databases of its own per tool, so no
 * tool's triggers fire in another tool's measurement.
 */
export type ToolName = 'Capra' | 'Bucardo';

export interface SyncSpec {
  /** Database name -> URL (no password). */
  dbs: Record<string, string>;
  /** The databases written to; the others are targets. Two sources: multi-master. */
  sources: string[];
  /** schema.table, each with a primary key. */
  tables: string[];
  /** Change notification: a kick from the writers' triggers, or polling once a second. */
  kick: 'notify' | 'poll';
}

export interface Tool {
  readonly name: ToolName;
  /** Installs the sync (triggers on); nothing runs yet. */
  setUp(sync: string, spec: SyncSpec): Promise<void>;
  /** Starts replicating one sync (the others set up stay idle); resolves when it runs, or throws after timeoutMs where a tool waits for that. */
  start(sync: string, timeoutMs?: number): Promise<void>;
  /** Stops replicating; the triggers stay. */
  stop(): Promise<void>;
  /** Leaves the sync out of later start()s; its databases are not used again. */
  remove(sync: string): Promise<void>;
  /** Postmaster pids of servers of the tool's own, pinned with the replication side (bench/pinning.ts). */
  replicationPids(): Promise<number[]>;
}

/**
 * Capra: a job per sync, its daemon in this process (pinned runs pin the
 * whole process with the replication side: during a writer run it does
 * nothing else but wait for pgbench).
 */
export class CapraTool implements Tool {
  readonly name = 'Capra';
  private readonly jobs = new Map<string, Awaited<ReturnType<typeof benchJob>>>();
  private daemons: Daemon[] = [];

  constructor(private readonly workDir: string) {}

  async setUp(sync: string, spec: SyncSpec): Promise<void> {
    const cfg = await benchJob({
      name: sync,
      nodes: spec.dbs,
      sources: spec.sources,
      tables: spec.tables,
      workDir: this.workDir,
      syncExtra: spec.kick === 'notify' ? 'kick: notify' : 'kick: "*/1 * * * * *"',
    });
    this.jobs.set(sync, cfg);
  }

  /**
   * Resolves once every lane of the job has had a run: its daemon holds the
   * job lock, has seen to copy_data for every pair of nodes and replicates
   * (as Bucardo's start waits for its first run). A multi-master sync of 8
   * nodes checks 56 pairs first, which a burst written right after a start
   * that did not wait would have counted against it.
   */
  async start(sync: string, timeoutMs = 60_000): Promise<void> {
    const cfg = this.jobs.get(sync);
    if (!cfg) throw new Error(`no Capra sync ${sync} set up`);
    // CAPRA_BENCH_RUN_GAP_MS: another gap between runs, for measuring what it changes (db/kick-timing.ts).
    const gap = process.env.CAPRA_BENCH_RUN_GAP_MS;
    const d = new Daemon(cfg, silentLogger, gap === undefined ? {} : { runGapMs: Number(gap) });
    d.start();
    this.daemons.push(d);
    const lanes = Object.values(cfg.syncs).reduce((n, s) => n + s.sources.reduce((m, src) => m + receiversOf(s, src).length, 0), 0);
    await until(async () => (await lanesRun(d)) >= lanes, `Capra's first run of sync ${sync}`, timeoutMs, 5);
  }

  async stop(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop()));
    this.daemons = [];
  }

  async remove(sync: string): Promise<void> {
    this.jobs.delete(sync);
  }

  async replicationPids(): Promise<number[]> {
    return [];
  }
}

/** How many lanes of the daemon's job have had a run (capra_runs_total, either result). */
async function lanesRun(d: Daemon): Promise<number> {
  const runs = (await d.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'capra_runs_total');
  const lanes = new Set<string>();
  for (const v of (runs?.values ?? []) as { labels: Record<string, unknown>; value: number }[]) {
    if (v.value > 0) lanes.add(`${v.labels.sync}\0${v.labels.source}\0${v.labels.target}`);
  }
  return lanes.size;
}

/**
 * Bucardo 5, driven through its command line (bench/bucardo.ts). Bucardo
 * names databases once for all syncs, so each sync's get the sync's name in
 * front.
 */
export class BucardoTool implements Tool {
  readonly name = 'Bucardo';
  constructor(private readonly bucardo: Bucardo) {}

  setUp(sync: string, spec: SyncSpec): Promise<void> {
    const dbs = Object.fromEntries(Object.entries(spec.dbs).map(([n, url]) => [`${sync}_${n}`, url]));
    return this.bucardo.addSync(sync, { dbs, sources: spec.sources.map((n) => `${sync}_${n}`), tables: spec.tables, kick: spec.kick });
  }

  start(sync: string, timeoutMs?: number): Promise<void> {
    return this.bucardo.start([sync], timeoutMs);
  }

  stop(): Promise<void> {
    return this.bucardo.stop();
  }

  remove(sync: string): Promise<void> {
    return this.bucardo.removeSync(sync);
  }

  /** The control database's server (started by Bucardo.setUp in workDir/control). */
  async replicationPids(): Promise<number[]> {
    return [await postmasterPid(path.join(this.bucardo.workDir, 'control'))];
  }
}
