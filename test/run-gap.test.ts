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
  get lanes(): LaneLabels[] {
    return [];
  }
  protected async runUntilDone(): Promise<boolean> {
    this.starts.push(Date.now());
    return this.busy;
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
