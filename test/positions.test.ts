// Trap 1 (no change skipped when transactions commit out of order) and
// trap 7 (bounded batches that never split a source transaction), driven run
// by run through runLane, without a daemon.
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { type LaneState, runLane } from '../orchestrator/src/sync/lane.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, withClient } from './harness/db.js';
import { makeJob, setUp } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;
const yaml = 'syncs:\n  s:\n    sources: [a]\n    targets: [b]';

t.test('a transaction that commits after a later one is not skipped', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: 'CREATE TABLE x (id int PRIMARY KEY)', yaml });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const state: LaneState = {};
  const ids = async (): Promise<number[]> => (await sql<{ id: number }>(job.urls.b!, 'SELECT id FROM x ORDER BY id')).map((r) => r.id);

  await withClient(job.urls.a!, async (t1) => {
    await t1.query('BEGIN');
    await t1.query('INSERT INTO x VALUES (1)'); // T1 takes the lower xid
    await sql(job.urls.a!, 'INSERT INTO x VALUES (2)'); // T2 commits first
    await runLane(conns, key, 1000, state);
    t.same(await ids(), [2], 'first run: only the committed T2');
    await t1.query('COMMIT');
  });
  await runLane(conns, key, 1000, state);
  t.same(await ids(), [1, 2], 'second run: T1 arrives although its xid is below T2');
  const again = await runLane(conns, key, 1000, state);
  t.equal(again.deltas, 0, 'nothing is applied twice');
});

t.test('a backlog is applied in bounded batches of whole transactions', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema: 'CREATE TABLE x (id int PRIMARY KEY, tx int)', yaml });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const sizes = [3, 4, 10, 1];
  let next = 1;
  for (const [tx, n] of sizes.entries()) {
    await sql(job.urls.a!, `INSERT INTO x SELECT g, ${tx} FROM generate_series(${next}, ${next + n - 1}) g`);
    next += n;
  }
  const state: LaneState = {};
  const seen: { deltas: number; more: boolean }[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await runLane(conns, key, 5, state);
    if (r.deltas === 0) break;
    seen.push({ deltas: r.deltas, more: r.more });
    // After every batch the target holds whole source transactions only.
    const counts = await sql<{ tx: number; n: number }>(job.urls.b!, 'SELECT tx, count(*)::int AS n FROM x GROUP BY tx ORDER BY tx');
    for (const c of counts) t.equal(c.n, sizes[c.tx], `transaction ${c.tx} is complete on the target`);
  }
  t.same(seen, [
    { deltas: 3, more: true },
    { deltas: 4, more: true },
    { deltas: 10, more: true }, // larger than the bound, but never split
    { deltas: 1, more: false },
  ]);
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM x'))[0]!.n, 18);
});
