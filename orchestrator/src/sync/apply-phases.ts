import { performance } from 'node:perf_hooks';

/**
 * Milliseconds a run spent in each step of its apply, for the bench
 * (bench/phases.ts) to say where a batch's time goes. Only timed, with
 * performance.now() around what runs anyway: nothing runs differently.
 * setup: the rest of the run (snapshot, the batch's transactions, table
 * metadata, the position's lock). The steps follow one another and add up
 * to the run (stepsMs), but for the source's row fetch, which runs while the
 * target deletes the keys (deleteThenCopy): rowFetch is its time beyond the
 * DELETE, rowFetchUnderDelete its time under it, which the run does not wait
 * for on top of the DELETE.
 */
export interface ApplyPhases {
  setup: number;
  keyScan: number;
  rowFetch: number;
  targetDelete: number;
  copyIn: number;
  positionWrite: number;
  commit: number;
  rowFetchUnderDelete: number;
}

/** The steps that follow one another in a run: their times add up to the run's. */
export const SEQUENTIAL_STEPS = ['setup', 'keyScan', 'rowFetch', 'targetDelete', 'copyIn', 'positionWrite', 'commit'] as const;

/** The run's time the phases account for (every step but the row fetch's part under the DELETE). */
export const stepsMs = (p: ApplyPhases): number => SEQUENTIAL_STEPS.reduce((ms, step) => ms + p[step], 0);

export const noPhases = (): ApplyPhases => ({
  setup: 0,
  keyScan: 0,
  rowFetch: 0,
  targetDelete: 0,
  copyIn: 0,
  positionWrite: 0,
  commit: 0,
  rowFetchUnderDelete: 0,
});

/** Runs `fn`, adding the time it took to `phase` of `phases` when given. */
export async function timed<T>(phases: ApplyPhases | undefined, phase: keyof ApplyPhases, fn: () => Promise<T>): Promise<T> {
  if (!phases) return fn();
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    phases[phase] += performance.now() - t0;
  }
}
