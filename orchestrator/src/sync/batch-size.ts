/**
 * How many delta rows a run takes. A run costs a fixed part (snapshot,
 * positions, table metadata, two commits) besides its rows, so while a
 * backlog lasts the batch doubles from `batch_rows` after every run that
 * was cut short, up to MAX_BATCH_GROWTH times it, and falls back to
 * `batch_rows` once a run takes everything. A batch is still cut only at a
 * transaction boundary and applied in one target transaction with its
 * position, so its size changes nothing of what a crash may lose or repeat.
 * The daemon's workers size each run; runLane and runSwap take the bound
 * they are given.
 */
export const MAX_BATCH_GROWTH = 16;

/** Kept by a lane or sync between runs. */
export interface BatchGrowth {
  /** The factor the next run's batch has over batch_rows (1 when unset). */
  batchGrowth?: number;
}

/** The delta rows the next run takes. */
export function batchSize(batchRows: number, state: BatchGrowth): number {
  return batchRows * (state.batchGrowth ?? 1);
}

/** After a run: grow while runs are cut short, back to batch_rows once one is not. */
export function afterRun(state: BatchGrowth, more: boolean): void {
  state.batchGrowth = more ? Math.min((state.batchGrowth ?? 1) * 2, MAX_BATCH_GROWTH) : 1;
}
