import { Connections } from '../orchestrator/src/db/connections.js';
import { type ApplyPhases, SEQUENTIAL_STEPS, noPhases, stepsMs } from '../orchestrator/src/sync/apply-phases.js';
import { afterRun, batchSize } from '../orchestrator/src/sync/batch-size.js';
import { type LaneState, runLane } from '../orchestrator/src/sync/lane.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { BENCH_TABLE, connect, createBenchTable, write } from './burst.js';
import { benchJob } from './job.js';
import { type ThroughputOptions, createDb } from './throughput.js';

/**
 * Where a batch's time goes, for Capra's one-way apply: the bursts of the
 * throughput phase (single-row updates in transactions of 1,000, and one
 * update of every row) written with no daemon running, then applied by
 * running the lane directly (runLane, as the daemon's lane worker does)
 * until nothing is left, adding up the phases each run reports
 * (RunResult.phases: performance.now() around the steps the run makes
 * anyway). Capra only: Bucardo's apply has no such steps to time.
 */
export interface PhaseFigure {
  /** Rows changed, and per transaction as in BurstFigure. */
  rows: number;
  txRows: number | 'all';
  /** Lane runs it took (batches). */
  runs: number;
  /** Milliseconds per phase, summed over the runs, and the runs' total (the sequential steps: see ApplyPhases). */
  ms: ApplyPhases;
  totalMs: number;
  /** Each phase's share of totalMs (0..1); rowFetchUnderDelete's is of time the runs did not spend on top of the DELETE. */
  share: ApplyPhases;
}

/** The throughput phase's servers, burst size and progress line, and where benchJob writes. */
export type PhasesOptions = Pick<ThroughputOptions, 'source' | 'target' | 'rows' | 'progress'> & { workDir: string };

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** Applies what is pending on the lane, run after run, and adds up their phases. */
async function drain(conns: Connections, key: Parameters<typeof runLane>[1], batchRows: number): Promise<{ runs: number; ms: ApplyPhases }> {
  const ms = noPhases();
  const state: LaneState = {};
  let runs = 0;
  for (;;) {
    // Sized as the daemon's lane worker sizes its runs.
    const r = await runLane(conns, key, batchSize(batchRows, state), state);
    afterRun(state, r.more);
    if (r.deltas > 0) runs++;
    for (const [phase, v] of Object.entries(r.phases ?? {})) ms[phase as keyof ApplyPhases] += v;
    if (!r.more) return { runs, ms };
  }
}

export async function benchPhases(o: PhasesOptions): Promise<PhaseFigure[]> {
  const db = 'phases_capra';
  await createDb(o.source.admin, db);
  await createDb(o.target.admin, db);
  const urls = { a: o.source.url(db), b: o.target.url(db) };
  await createBenchTable(Object.values(urls), o.rows);
  const cfg = await benchJob({ name: db, nodes: urls, tables: [`public.${BENCH_TABLE}`], workDir: o.workDir });
  const sync = Object.values(cfg.syncs)[0]!;
  const key = { job: cfg.name, sync, source: 'a', target: 'b' };
  const conns = new Connections(cfg, 'capra-sync', silentLogger);
  const writer = await connect(urls.a);
  const figures: PhaseFigure[] = [];
  try {
    for (const txRows of [1000, 'all'] as const) {
      o.progress(`phases: Capra, one-way, ${o.rows} rows ${txRows === 'all' ? 'in one transaction' : 'in transactions of 1,000'}, applied by lane runs`);
      await write(writer, o.rows, txRows);
      const { runs, ms } = await drain(conns, key, cfg.batchRows);
      const totalMs = stepsMs(ms);
      const share = noPhases();
      for (const p of Object.keys(ms) as (keyof ApplyPhases)[]) {
        share[p] = totalMs > 0 ? Math.round((ms[p] / totalMs) * 1000) / 1000 : 0;
        ms[p] = round(ms[p]);
      }
      figures.push({ rows: o.rows, txRows, runs, ms, totalMs: round(totalMs), share });
    }
  } finally {
    await writer.end();
    await conns.close();
  }
  return figures;
}

/** One printed line per burst: total and each phase's share. */
export function phaseLine(f: PhaseFigure): string {
  const what = f.txRows === 'all' ? 'one transaction' : `transactions of ${f.txRows.toLocaleString('en-US')}`;
  const parts = SEQUENTIAL_STEPS.map((p) => `${p} ${Math.round(f.share[p] * 100)}%`);
  const under = `and the source's row fetch under the target's DELETE, not counted above: ${Math.round(f.share.rowFetchUnderDelete * 100)}%`;
  return `${what}: ${f.runs} runs, ${(f.totalMs / 1000).toFixed(2)} s: ${parts.join(', ')} (${under})`;
}
