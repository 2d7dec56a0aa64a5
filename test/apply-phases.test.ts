// The timers of the one-way apply (RunResult.phases, read by bench/phases.ts):
// every step of an applied batch is timed, on both key paths (a parameter of
// keys, a temp table above INDEX_LOOKUP_KEYS) and for a TRUNCATE, and the
// steps add up to the run. The source's row fetch runs while the target
// deletes the keys: timed as its part under the DELETE (outside the run's
// sum) and its part beyond it, which is 0 when the DELETE took longer.
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { stepsMs } from '../orchestrator/src/sync/apply-phases.js';
import { INDEX_LOOKUP_KEYS } from '../orchestrator/src/sync/apply.js';
import { type LaneState, type RunResult, runLane } from '../orchestrator/src/sync/lane.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters } from './harness/db.js';
import { makeJob, setUp } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;
const yaml = 'syncs:\n  s:\n    sources: [a]\n    targets: [b]';

t.test("an applied batch carries each step's time", async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: 'CREATE TABLE x (id int PRIMARY KEY, v int)', yaml });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const state: LaneState = {};
  const timedRun = async (): Promise<{ r: RunResult; ms: number }> => {
    const t0 = performance.now();
    const r = await runLane(conns, key, 100_000, state);
    return { r, ms: performance.now() - t0 };
  };
  const count = async (url: string): Promise<number> => (await sql<{ n: number }>(url, 'SELECT count(*)::int AS n FROM x'))[0]!.n;

  const cases: [string, string, ('keyScan' | 'rowFetch' | 'targetDelete' | 'copyIn')[]][] = [
    ['a few keys', 'INSERT INTO x SELECT g, 0 FROM generate_series(1, 10) g', ['keyScan', 'rowFetch', 'targetDelete', 'copyIn']],
    [
      'more keys than INDEX_LOOKUP_KEYS',
      `INSERT INTO x SELECT g, 0 FROM generate_series(11, ${INDEX_LOOKUP_KEYS + 100}) g`,
      ['keyScan', 'rowFetch', 'targetDelete', 'copyIn'],
    ],
    ['a truncate', 'TRUNCATE x; INSERT INTO x VALUES (1, 1)', ['rowFetch', 'targetDelete', 'copyIn']],
  ];
  for (const [what, change, steps] of cases) {
    await sql(job.urls.a!, change);
    const { r, ms } = await timedRun();
    t.ok(r.deltas > 0, `${what}: a batch was applied`);
    t.equal(await count(job.urls.b!), await count(job.urls.a!), `${what}: the target has the source's rows`);
    const p = r.phases!;
    t.ok(p, `${what}: the run carries its phases`);
    for (const [step, v] of Object.entries(p)) t.ok(v >= 0, `${what}: ${step} is not negative (${v.toFixed(2)} ms)`);
    for (const step of [...steps, 'positionWrite', 'commit', 'setup'] as const) {
      const v = step === 'rowFetch' ? p.rowFetch + p.rowFetchUnderDelete : p[step];
      t.ok(v > 0, `${what}: ${step} was timed`);
    }
    const sum = stepsMs(p);
    t.ok(sum <= ms + 0.5, `${what}: the steps (${sum.toFixed(1)} ms) fit in the run (${ms.toFixed(1)} ms)`);
  }
});
