// A worker's runs start at least runGapMs apart (RUN_GAP_MS, db/kick-timing.ts):
// under load every kick and linger step finds work, and each run has a fixed
// cost on the source beside the writers. Kicks that come meanwhile are taken
// by the one run that follows; a kick after a quiet spell runs at once.
import t from 'tap';
import type { SyncConfig } from '../orchestrator/src/config/types.js';
import type { Connections } from '../orchestrator/src/db/connections.js';
import { type LaneLabels, Worker } from '../orchestrator/src/daemon/worker.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';

class CountingWorker extends Worker {
  readonly starts: number[] = [];
  /** Whether its runs apply anything. */
  busy = true;
  /** Changes each of its runs applies, when busy. */
  deltas = 1;
  get lanes(): LaneLabels[] {
    return [];
  }
  protected async runUntilDone(): Promise<number> {
    this.starts.push(Date.now());
    return this.busy ? this.deltas : 0;
  }
  protected recordFailure(): void {}
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('kicks every 10 ms make runs runGapMs apart, and a kick after a quiet spell runs at once', async (t) => {
  const gap = 100;
  const w = new CountingWorker({ name: 's' } as SyncConfig, {} as Connections, silentLogger, { batchRows: 1, retryBaseMs: 1, retryCapMs: 1, runGapMs: gap });
  w.start();
  t.teardown(() => w.stop());
  await sleep(20); // the start's own run
  const from = w.starts.length;
  const began = Date.now();
  while (Date.now() - began < 1_000) {
    w.wake();
    await sleep(10);
  }
  await sleep(gap + 20); // the run that takes the last kicks
  const busy = w.starts.slice(from);
  t.ok(busy.length >= 5, `kicks under load still run (${busy.length} runs in 1 s)`);
  t.ok(busy.length <= 12, `at most one run per ${gap} ms: ${busy.length} runs for 100 kicks`);
  for (let i = 1; i < busy.length; i++) t.ok(busy[i]! - busy[i - 1]! >= gap - 2, `run ${i} started ${busy[i]! - busy[i - 1]!} ms after the one before`);
  const lastRun = w.starts[w.starts.length - 1]!;
  await sleep(gap * 3);
  const kicked = Date.now();
  w.wake();
  await sleep(30);
  t.equal(w.starts.length, from + busy.length + 1, 'a kick after a quiet spell runs, once');
  t.ok(w.starts[w.starts.length - 1]! - kicked < 30 && kicked - lastRun > gap, 'at once');
});

t.test('runs that find nothing (a linger when all is quiet) hold up no kick after them', async (t) => {
  const w = new CountingWorker({ name: 's' } as SyncConfig, {} as Connections, silentLogger, { batchRows: 1, retryBaseMs: 1, retryCapMs: 1, runGapMs: 250 });
  w.busy = false;
  w.start();
  t.teardown(() => w.stop());
  await sleep(20);
  for (let i = 0; i < 5; i++) {
    const before = w.starts.length;
    const kicked = Date.now();
    w.wake();
    await sleep(30);
    t.equal(w.starts.length, before + 1, `kick ${i + 1}, 30 ms after the last run, runs`);
    t.ok(w.starts[w.starts.length - 1]! - kicked < 30, 'at once');
  }
});

t.test('under heavy writes the gap doubles up to runGapMaxMs, and comes back once writes are light', async (t) => {
  const [gap, max] = [50, 200];
  const w = new CountingWorker({ name: 's' } as SyncConfig, {} as Connections, silentLogger, {
    batchRows: 1,
    retryBaseMs: 1,
    retryCapMs: 1,
    runGapMs: gap,
    runGapMaxMs: max,
  });
  // 1,000 changes a run, runs 50 to 200 ms apart: 5,000 to 20,000 a second, over BUSY_CHANGES_PER_SECOND.
  w.deltas = 1_000;
  w.start();
  t.teardown(() => w.stop());
  const kickFor = async (ms: number): Promise<number[]> => {
    const from = w.starts.length;
    const began = Date.now();
    while (Date.now() - began < ms) {
      w.wake();
      await sleep(5);
    }
    const starts = w.starts.slice(from);
    return starts.slice(1).map((s, i) => s - starts[i]!);
  };
  await sleep(20); // the start's own run
  const heavy = await kickFor(1_200);
  t.ok(heavy.length >= 4, `runs go on under heavy writes (${heavy.length + 1} in 1.2 s)`);
  // The start's run and the first kicked one were runGapMs apart: the gap after them has doubled already.
  t.ok(heavy[0]! >= 2 * gap - 2 && heavy[0]! < max, `the first gap has doubled once: ${heavy[0]} ms`);
  t.ok(heavy[1]! >= 4 * gap - 2, `then twice: ${heavy[1]} ms`);
  // Bounds with room for a loaded machine's timers: doubling once more would be 400 ms.
  for (const d of heavy.slice(2)) t.ok(d >= max - 2 && d < 2 * max, `then stays at runGapMaxMs: ${d} ms`);
  // 1 change a run: a few dozen a second, light.
  w.deltas = 1;
  const light = await kickFor(1_000);
  t.ok(light.length >= 10, `light writes: runs runGapMs apart again (${light.length + 1} in 1 s)`);
  // The gap of before (200 ms) does not stay: each is nearer 50 ms than 200.
  for (const d of light.slice(1)) t.ok(d >= gap - 2 && d < (gap + max) / 2, `${d} ms apart`);
});
