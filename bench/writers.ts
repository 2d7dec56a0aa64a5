import pg from 'pg';
import { pgbenchInit, pgbenchTps } from './pgbench.js';
import { type CpuSplit, pinSelf, pinServer } from './pinning.js';
import type { Tool, ToolName } from './tools.js';

/**
 * Writer overhead: pgbench's TPC-B-like transaction (three UPDATEs, a
 * SELECT and an INSERT into pgbench_history, which gets a primary key so
 * that it can be replicated) on a database with no triggers, and on copies
 * of it replicated by each tool to a second server, with the tool's daemon
 * running: once kicked by its triggers (NOTIFY) and once polling every
 * second instead (no NOTIFY), which isolates what kicking costs; and with the
 * triggers on but the daemon stopped (capture only: what the triggers alone
 * cost), the daemon started after the run to empty the log.
 *
 * Each run is made pinned (see bench/pinning.ts: pgbench and the source
 * server on the writer side's cores, the daemon and the target server on the
 * others) and unpinned, the polling runs pinned only; on one core, unpinned
 * only.
 *
 * Every configuration has its own database, copied from one freshly loaded
 * template on each server, so no tool's triggers fire in another's runs.
 * Runs are interleaved round by round (each round runs every configuration
 * once), so that all share whatever the machine is doing; the figure is the
 * best round, after an unrecorded warm-up run on each database. Before each run: VACUUM of the run's databases (so that
 * autovacuum has nothing left from earlier runs to do during this one) and a
 * CHECKPOINT on both servers. After each run the daemon is left running
 * until the target equals the source, so the next run starts without a
 * backlog; that wait is recorded as the catch-up time.
 */
export type WriterConfig = 'none' | `${ToolName} ${'kick' | 'poll' | 'capture'}`;

export interface TpsFigure {
  config: WriterConfig;
  clients: number;
  /** Writer side and replication side on separate cores (bench/pinning.ts). */
  pinned: boolean;
  /** TPS of each round. */
  runs: number[];
  best: number;
  /** Seconds from the end of each run until the target had everything; null: it never did (within 2 minutes), or no tool. */
  catchUpSeconds: (number | null)[];
}

export interface WritersOptions {
  pgbench: string;
  /** URL of a maintenance database on the source and the target server, and the URL of a database there by name. */
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  scale: number;
  clients: number[];
  /** Client counts at which the polling configurations run too. */
  pollClients: number[];
  seconds: number;
  /** Length of the unrecorded first run on each database; 0: none. */
  warmUpSeconds: number;
  rounds: number;
  tools: Tool[];
  /** The cores to pin apart; null: no pinned runs. */
  pinning: CpuSplit | null;
  /**
   * Kick pairs only (`npm run bench -- --only kick`): each tool kicked and
   * polling, at pollClients, pinned where pinning allows; each round runs
   * the pair back to back, in turns kicked first and polling first, so that
   * each round's kick cost compares two runs that shared the machine.
   */
  kickPairs?: boolean;
  /** Postmaster pids of the source and the target server. */
  pids: { source: number; target: number };
  workDir: string;
  progress: (line: string) => void;
}

export const PGBENCH_TABLES = ['public.pgbench_accounts', 'public.pgbench_branches', 'public.pgbench_tellers', 'public.pgbench_history'];

/** Runs `statements` in order on a connection of their own; the last one's rows. */
export async function run(url: string, ...statements: string[]): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  try {
    let rows: pg.QueryResultRow[] = [];
    for (const s of statements) rows = (await c.query(s)).rows;
    return rows;
  } finally {
    await c.end();
  }
}

const dbName = (config: WriterConfig): string => `pgb_${config.replace(/\W/g, '_').toLowerCase()}`;

/** What every replicated TPC-B transaction changes, cheap to compare: equal on both sides once the target has every transaction. */
const STATE = `SELECT (SELECT sum(bbalance) FROM pgbench_branches)::text || '/' || (SELECT sum(tbalance) FROM pgbench_tellers)::text
                   || '/' || (SELECT count(*) FROM pgbench_history)::text AS s`;

/**
 * Seconds until the target's state equals the source's; null when it still
 * differs after `timeoutMs` with the tool running (a lost change: the bench
 * says so and goes on with the same databases' later runs measuring TPS only).
 */
async function caughtUp(source: string, target: string, timeoutMs: number): Promise<number | null> {
  const start = Date.now();
  for (;;) {
    const [a, b] = await Promise.all([run(source, STATE), run(target, STATE)]);
    if (a[0]!.s === b[0]!.s) return (Date.now() - start) / 1000;
    if (Date.now() - start > timeoutMs) return null;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * How long a tool started after a capture-only run may take to drain that
 * run's log and answer a kick (start()'s bound). Bucardo drained the
 * warm-up's log (the first run after loading, the slowest) in 46.8 and
 * 54.5 s in the full runs of 2026-12-07 05:28 and 10:41, and the one of
 * 07:05 failed there at the default 60 s (its output was lost); later
 * drains took 5 to 9 s.
 */
const DRAIN_START_MS = 300_000;

export async function benchWriters(o: WritersOptions): Promise<TpsFigure[]> {
  o.progress(`writers: loading pgbench at scale ${o.scale} on both servers`);
  for (const side of [o.source, o.target]) {
    await run(side.admin, 'CREATE DATABASE pgb_template');
    await pgbenchInit(o.pgbench, side.url('pgb_template'), o.scale);
    await run(side.url('pgb_template'), 'ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY', 'VACUUM ANALYZE');
  }
  const modes = o.pollClients.length > 0 ? (['kick', 'poll'] as const) : (['kick'] as const);
  const toolModes = o.kickPairs ? modes : ([...modes, 'capture'] as const);
  const configs: WriterConfig[] = [...(o.kickPairs ? [] : ['none' as const]), ...o.tools.flatMap((t) => toolModes.map((m): WriterConfig => `${t.name} ${m}`))];
  for (const config of configs) {
    for (const side of config === 'none' ? [o.source] : [o.source, o.target]) await run(side.admin, `CREATE DATABASE ${dbName(config)} TEMPLATE pgb_template`);
  }
  for (const tool of o.tools) {
    for (const mode of toolModes) {
      const db = dbName(`${tool.name} ${mode}`);
      await tool.setUp(db, {
        dbs: { a: o.source.url(db), b: o.target.url(db) },
        sources: ['a'],
        tables: PGBENCH_TABLES,
        kick: mode === 'poll' ? 'poll' : 'notify',
      });
    }
  }

  const pins = o.pinning ? (o.kickPairs ? [true] : [true, false]) : [false];
  const plan = configs.flatMap((config) =>
    (config.endsWith('poll') || o.kickPairs ? o.pollClients : o.clients).flatMap((clients) =>
      (config.endsWith('poll') ? pins.slice(0, 1) : pins).map((pinned) => ({ config, clients, pinned })),
    ),
  );
  const figures: TpsFigure[] = plan.map((p) => ({ ...p, runs: [], best: 0, catchUpSeconds: [] }));
  const once = async (
    config: WriterConfig,
    clients: number,
    pinned: boolean,
    seconds: number,
    what: string,
  ): Promise<{ tps: number; catchUp: number | null }> => {
    const db = dbName(config);
    const tool = o.tools.find((t) => config.startsWith(`${t.name} `)) ?? null;
    const captureOnly = config.endsWith('capture');
    // Every database of the run vacuumed, so autovacuum has nothing left from earlier runs to do during this one.
    for (const side of tool ? [o.source, o.target] : [o.source]) await run(side.url(db), 'VACUUM', 'CHECKPOINT');
    const split = pinned ? o.pinning : null;
    if (split) await pinSides(o, tool, split.writer, split.replication);
    try {
      if (!captureOnly) await tool?.start(db);
      o.progress(`writers: ${what}, ${config}, ${clients} clients${pinned ? ', pinned' : ''}, ${seconds} s`);
      const tps = await pgbenchTps(o.pgbench, { url: o.source.url(db), clients, seconds, scriptDir: o.workDir, ...(split ? { cpus: split.writer } : {}) });
      // Capture only: the daemon empties the log after the run, so the next run starts from none.
      if (captureOnly) await tool?.start(db, DRAIN_START_MS);
      const catchUp = tool ? await caughtUp(o.source.url(db), o.target.url(db), 120_000) : null;
      if (tool && catchUp === null) o.progress(`writers: ${config}: the target still differs from the source 2 minutes after the run`);
      return { tps, catchUp };
    } finally {
      await tool?.stop();
      if (split) await pinSides(o, tool, split.all, split.all);
    }
  };
  // A first, unrecorded run on each database: the first run after loading was the slowest of all on this VM.
  if (o.warmUpSeconds > 0) for (const config of configs) await once(config, o.clients[0]!, false, o.warmUpSeconds, 'warm-up');
  for (let round = 1; round <= o.rounds; round++) {
    for (const f of o.kickPairs && round % 2 === 0 ? [...figures].reverse() : figures) {
      const r = await once(f.config, f.clients, f.pinned, o.seconds, `round ${round}/${o.rounds}`);
      f.runs.push(r.tps);
      f.catchUpSeconds.push(r.catchUp);
    }
  }
  for (const f of figures) f.best = Math.max(...f.runs);
  return figures;
}

/**
 * The writer side's and the replication side's CPUs: the source server on
 * `writer`, and on `replication` the target server, the tool's own servers
 * and this process (which hosts Capra's daemon, and whose CPUs `bucardo
 * start` passes on to Bucardo's daemons). pgbench is started on `writer` by
 * pgbenchTps.
 */
async function pinSides(o: WritersOptions, tool: Tool | null, writer: string, replication: string): Promise<void> {
  await pinSelf(replication);
  await pinServer(o.pids.source, writer);
  for (const pid of [o.pids.target, ...((await tool?.replicationPids()) ?? [])]) await pinServer(pid, replication);
}
