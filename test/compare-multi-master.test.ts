// capra compare and repair on a multi-master sync (two sources and a target):
// drift on both sources, behind the sync's back; repair settles each key by
// the sync's conflict rule (latest, then a priority list), logs each decision
// as repaired, and compare agrees afterwards.
import pg from 'pg';
import t, { type Test } from 'tap';
import { compareSync } from '../orchestrator/src/compare/compare.js';
import { repairSync } from '../orchestrator/src/compare/repair.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const behind = (url: string, text: string): Promise<unknown> => sql(url, `BEGIN; SELECT set_config('capra.origin', 'drift', true); ${text}; COMMIT`);

/** A multi-master sync s of sources a and b and target c over public.items, installed, with its triggers on. */
async function itemsJob(t: Test, conflict: string): Promise<Job> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE items (id int PRIMARY KEY, name text, qty int)',
    yaml: `syncs:\n  s:\n    sources: [a, b]\n    targets: [c]\n    tables: { include: [public.items] }\n    copy_data: never\n    conflict: ${conflict}\n`,
  });
  await setUp(job);
  return job;
}

async function scenario(t: Test, conflict: string, winners: Record<string, string>, c: Record<string, string | null>): Promise<void> {
  const job = await itemsJob(t, conflict);
  // No purge during the test: "latest" reads when each source last changed a key from its delta log.
  startDaemon(t, job, { purgeEveryMs: 3_600_000 });
  const { a, b } = job.urls as Record<string, string>;
  await sql(a!, `INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 1000) g`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await sql(b!, `UPDATE items SET qty = 222 WHERE id = 2`); // b changed key 2 last, through the sync
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await behind(a!, `UPDATE items SET name = 'drift a' WHERE id IN (1, 2)`);
  await behind(b!, `DELETE FROM items WHERE id = 3`);

  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const sync = job.cfg.syncs.s!;
  const before = await compareSync(conns, job.name, sync, {}, silentLogger);
  t.same(
    before.map((r) => [r.node, r.missing.map((d) => d.key.id), r.extra.map((d) => d.key.id), r.different.map((d) => d.key.id).sort()]),
    [
      ['b', ['3'], [], ['1', '2']],
      ['c', [], [], ['1', '2']],
    ],
    'each node compared with a: the drift on both sources',
  );

  const deltas = async (): Promise<number[]> =>
    Promise.all(['a', 'b'].map(async (n) => (await sql<{ n: number }>(job.urls[n]!, 'SELECT count(*)::int AS n FROM repl.delta'))[0]!.n));
  const deltasBefore = await deltas();
  const rep = await repairSync(conns, job.name, sync, { dryRun: false }, silentLogger);
  t.equal(rep.skipped, 0);
  const logged = await sql<{ id: string; decision: string; winner: string; strategy: string }>(
    job.cfg.metadata,
    `SELECT key->>'id' AS id, decision, winner, strategy FROM repl.conflict WHERE decision = 'repaired' ORDER BY (key->>'id')::int`,
  );
  t.same(
    logged.map((r) => [r.id, r.decision, r.winner]),
    Object.entries(winners).map(([id, w]) => [id, 'repaired', w]),
    `${conflict}: each key's decision logged as repaired, with its winner`,
  );
  t.equal(logged[0]!.strategy, conflict.replace(/\s/g, '').replace(',', ', '));
  const after = await compareSync(conns, job.name, sync, {}, silentLogger);
  t.same(
    after.map((r) => r.missing.length + r.extra.length + r.different.length),
    [0, 0],
    'compare finds nothing after the repair',
  );
  const rows = await sql<{ id: number; name: string }>(job.urls.c!, 'SELECT id, name FROM items WHERE id <= 3 ORDER BY id');
  t.same(Object.fromEntries(rows.map((r) => [String(r.id), r.name])), c, 'the target has the winners');
  t.same(await deltas(), deltasBefore, 'the repair was not captured on either source');
}

t.test('latest: the source that changed the key last wins', (t) =>
  scenario(t, 'latest', { 1: 'a', 2: 'b', 3: 'a' }, { 1: 'drift a', 2: 'item 2', 3: 'item 3' }),
);

t.test('a priority list: the first listed wins', (t) => scenario(t, '[b, a]', { 1: 'b', 2: 'b', 3: 'b' }, { 1: 'item 1', 2: 'item 2' }));

// A compare locks the receivers' positions one node after another; a
// multi-master run locks the same rows. Were the run to lock them on all nodes
// at once, it could hold c's while the compare, holding a's, waits for c's and
// the run waits for a's: a cycle across servers that no server sees, and both
// would wait for ever. Here the compare holds a's and waits on b's (held by
// another session) while the daemon's run waits on a's; b's are let go.
t.test('a compare and a multi-master run lock the positions in one order: neither waits for ever', async (t) => {
  const job = await itemsJob(t, 'latest');
  startDaemon(t, job);
  const { a, b } = job.urls as Record<string, string>;
  await sql(a!, `INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 100) g`);
  await sql(b!, `INSERT INTO items VALUES (101, 'item 101', 101)`);
  await waitSame(job, 'items', ['a', 'b', 'c']);

  const waiting = async (url: string): Promise<number> =>
    (await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`))[0]!.n;
  const holder = new pg.Client({ connectionString: b! });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM repl.applied WHERE job = $1 AND sync = $2 FOR UPDATE', [job.name, 's']);

  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const compared = compareSync(conns, job.name, job.cfg.syncs.s!, {}, silentLogger).then(
    (r) => r.map((x) => x.missing.length + x.extra.length + x.different.length),
    (err: Error) => err.message,
  );
  await waitFor(async () => (await waiting(b!)) >= 1, { what: "the compare to wait on b's positions" });
  await waitFor(async () => (await waiting(a!)) >= 1, { what: "the daemon's run to wait on a's positions, which the compare holds" });
  await holder.query('COMMIT');

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([compared, new Promise<'stuck'>((r) => (timer = setTimeout(() => r('stuck'), 30_000)))]);
  clearTimeout(timer);
  if (outcome === 'stuck') {
    // Let both go, so that the failure is reported rather than the file timing out.
    for (const url of Object.values(job.urls))
      await sql(url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    await compared;
  }
  t.same(outcome, [0, 0], 'the compare finished, and found the nodes in agreement');
  await sql(b!, `UPDATE items SET qty = 0 WHERE id = 7`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  t.pass('the daemon went on replicating');
});
