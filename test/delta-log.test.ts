// The delta-log protocol as written in SQL (extension/node/040-060): what
// "the changes after a position" are, that a batch read through
// repl.start_batch / repl.batch_changes is exactly those changes, that the
// planner inlines batch_changes (the txid index range scan stays: a
// function scan would read the whole log on every run), that batch_cut
// reads the log in the order of that index (never all of it, then sorted),
// where a batch is cut, pending counts, and how positions are locked,
// stored and confirmed.
import type pg from 'pg';
import t, { type Test } from 'tap';
import {
  type LaneRef,
  appliedPosition,
  batchCut,
  batchChangedKeys,
  batchKeys,
  batchTables,
  confirmPosition,
  lockPosition,
  pendingAfter,
  registeredPosition,
  startBatch,
  storePosition,
} from '../orchestrator/src/sync/delta-log.js';
import { applyError, runFailureMessage } from '../orchestrator/src/db/errors.js';
import { installSide } from '../orchestrator/src/db/schema-side.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, withClient } from './harness/db.js';
import { type Job, makeJob, setUp } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

/** A one-way sync a → b of tables x and y, set up: its lane, the tables' oids, and where add-triggers registered the lane's start. */
async function oneWayLane(t: Test): Promise<{ job: Job; lane: LaneRef; rel: { x: number; y: number }; start: string }> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY); CREATE TABLE y (id int PRIMARY KEY)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]',
  });
  await setUp(job);
  const lane: LaneRef = { job: job.name, sync: 's', source: 'a', target: 'b' };
  const [rel] = await sql<{ x: number; y: number }>(job.urls.a!, `SELECT 'x'::regclass::oid::int AS x, 'y'::regclass::oid::int AS y`);
  const start = (await withClient(job.urls.a!, (c) => registeredPosition(c, lane)))!;
  return { job, lane, rel: rel!, start };
}

t.test('the delta-log protocol', async (t) => {
  const { job, lane, rel, start } = await oneWayLane(t);
  t.match(start, /^\d+:\d+:/, 'add-triggers registered where the lane starts');

  await sql(job.urls.a!, 'INSERT INTO x SELECT generate_series(1, 3)');
  await sql(job.urls.a!, 'INSERT INTO y VALUES (1)');
  // A change an applier of this job wrote here (cascade): never sent back.
  await withClient(job.urls.a!, async (c) => {
    await c.query('BEGIN');
    await c.query(`SELECT set_config('capra.origin', $1, true), set_config('capra.cascade', 'on', true)`, [job.name]);
    await c.query('INSERT INTO x VALUES (100)');
    await c.query('COMMIT');
  });
  // Open while the position below is taken, committed after it: must not be skipped.
  await withClient(job.urls.a!, async (late) => {
    await late.query('BEGIN');
    await late.query('INSERT INTO x VALUES (4)');
    const [mid] = await sql<{ s: string }>(job.urls.a!, 'SELECT pg_current_snapshot()::text AS s');
    await late.query('COMMIT');
    const [now] = await sql<{ s: string }>(job.urls.a!, 'SELECT pg_current_snapshot()::text AS s');

    const after = async (from: string, upto: string): Promise<number[]> =>
      (
        await sql<{ id: number }>(job.urls.a!, `SELECT (d.pk->>'id')::int AS id FROM repl.changes($1, $2, $3) d WHERE d.relid = $4 ORDER BY 1`, [
          from,
          upto,
          job.name,
          rel.x,
        ])
      ).map((r) => r.id);
    t.same(await after(start, mid!.s), [1, 2, 3], "repl.changes: what the later position sees, none of the job's own, not the open transaction");
    t.same(await after(mid!.s, now!.s), [4], 'the transaction open at the earlier position comes after it');
    t.same(await after(start, now!.s), [1, 2, 3, 4], 'both at once');

    await withClient(job.urls.a!, async (c) => {
      const txids = (
        await c.query<{ t: string }>(`SELECT d.txid::text AS t FROM repl.changes($1, $2, $3) d WHERE d.relid = ANY ($4::oid[]) ORDER BY d.txid`, [
          start,
          now!.s,
          job.name,
          [rel.x, rel.y],
        ])
      ).rows.map((r) => BigInt(r.t));
      t.equal(txids.length, 5, 'five changes to the two tables');
      t.ok(txids[0]! < txids[4]!, 'in more than one transaction');
      for (let limit = 1; limit <= txids.length; limit++) {
        t.same(
          await batchCut(c, start, now!.s, job.name, [rel.x, rel.y], limit),
          { first: txids[0], past: txids[limit] ?? null },
          `batchCut at ${limit}: the first txid, and the one of the change just past the limit (none past all of them)`,
        );
      }
      t.same(await batchCut(c, now!.s, now!.s, job.name, [rel.x, rel.y], 10), { first: null, past: null }, 'batchCut of nothing: neither');
      const [ytx] = await sql<{ t: string }>(job.urls.a!, `SELECT d.txid::text AS t FROM repl.changes($1, $2, $3) d WHERE d.relid = $4`, [
        start,
        now!.s,
        job.name,
        rel.y,
      ]);
      t.same(await batchCut(c, start, now!.s, job.name, [rel.y], 1), { first: BigInt(ytx!.t), past: null }, "batchCut of one table: only that table's changes");

      // batch_cut runs its own plan (not inlined), with bitmap scans and
      // sorts off: the planner, whose statistics of the log lag behind, took
      // a few changes for many, read the whole backlog by a bitmap scan and
      // sorted it on every run. auto_explain shows the plan inside.
      const [fn] = await sql<{ config: string[] | null }>(job.urls.a!, `SELECT proconfig AS config FROM pg_proc WHERE oid = 'repl.batch_cut'::regproc`);
      t.same([...(fn!.config ?? [])].sort(), ['enable_bitmapscan=off', 'enable_sort=off'], 'batch_cut: bitmap scans and sorts off');
      const logged: string[] = [];
      const onNotice = (n: { message?: string }): void => {
        logged.push(n.message ?? '');
      };
      c.on('notice', onNotice);
      try {
        await c.query(`LOAD 'auto_explain'`);
        await c.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; SET client_min_messages = log`);
        await c.query('SELECT * FROM repl.batch_cut($1, $2, $3, ARRAY[$4::oid], 2)', [start, now!.s, job.name, rel.x]);
      } finally {
        await c.query('RESET client_min_messages; RESET auto_explain.log_min_duration; RESET auto_explain.log_nested_statements');
        c.off('notice', onNotice);
      }
      const inner = logged.find((m) => /delta/.test(m)) ?? '';
      t.equal(inner.match(/Index Scan using delta_txid_idx/g)?.length, 2, 'batch_cut reads the log by its txid index, once for each txid');
      t.notMatch(inner, /Bitmap|Sort/, 'in its order: no bitmap scan, no sort');

      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await startBatch(c, start, now!.s, job.name);
      t.same(
        (await batchTables(c, [rel.x, rel.y])).sort((p, q) => p.relid - q.relid),
        [
          { relid: rel.x, truncated: false, keyed: true, rows: 4 },
          { relid: rel.y, truncated: false, keyed: true, rows: 1 },
        ].sort((p, q) => p.relid - q.relid),
        'batch_changes between the bounds start_batch set: the same changes, per table',
      );
      const plan = (await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT * FROM repl.batch_changes(ARRAY[$1::oid])`, [rel.x])).rows
        .map((r) => r['QUERY PLAN'])
        .join('\n');
      t.match(plan, /Index (Only )?Scan (using|on) delta_txid_idx/, 'batch_changes is inlined: the txid index range scan stays');
      t.notMatch(plan, /Function Scan on (batch_changes|changes)/, 'no function scan of the log');
      await c.query('COMMIT');
      t.same(
        await c.query(`SELECT current_setting('capra.batch_old', true) AS v`).then((r) => r.rows[0].v ?? ''),
        '',
        "the batch's bounds end with the transaction",
      );

      const pending = await pendingAfter(c, job.name, 's', start);
      t.equal(pending.rows, 5, 'pending: every change after the position on the tables the sync tracks');
      t.ok(pending.lagSeconds >= 0, 'with the age of the oldest');
      t.same(await pendingAfter(c, job.name, 's', now!.s), { rows: 0, lagSeconds: 0 }, 'nothing after the latest position');
    });
  });

  await withClient(job.urls.b!, async (c) => {
    t.equal(await appliedPosition(c, lane), null, 'the target has no position before the first run');
    await c.query('BEGIN');
    t.equal(await lockPosition(c, lane), null, 'lock_position without a start: no row');
    t.equal(await lockPosition(c, lane, start), start, 'with a start: stored and locked');
    await storePosition(c, lane, '5:5:');
    t.equal(await lockPosition(c, lane, start), '5:5:', 'a start does not overwrite a stored position');
    await c.query('COMMIT');
    t.equal(await appliedPosition(c, lane), '5:5:', 'store_position: the new position');
  });
  await withClient(job.urls.a!, (c) => confirmPosition(c, lane, '5:5:'));
  t.equal(await withClient(job.urls.a!, (c) => registeredPosition(c, lane)), '5:5:', "confirm_position: the source's copy");
});

/**
 * Runs `fn` in a transaction on the source of a one-way lane, with a batch
 * started that holds: keys 1 to 3 of x (1 changed twice), 7 inserted into
 * y, then a TRUNCATE of y.
 */
async function inMixedBatch(t: Test, fn: (c: pg.ClientBase, rel: { x: number; y: number }) => Promise<void>): Promise<void> {
  const { job, rel, start } = await oneWayLane(t);
  await sql(job.urls.a!, 'INSERT INTO x SELECT generate_series(1, 3)');
  await sql(job.urls.a!, 'UPDATE x SET id = id WHERE id = 1');
  await sql(job.urls.a!, 'INSERT INTO y VALUES (7)');
  await sql(job.urls.a!, 'TRUNCATE y');
  const [now] = await sql<{ s: string }>(job.urls.a!, 'SELECT pg_current_snapshot()::text AS s');
  await withClient(job.urls.a!, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await startBatch(c, start, now!.s, job.name);
    await fn(c, rel);
    await c.query('COMMIT');
  });
}

t.test("batchKeys: the batch's keys of the tables asked for, each once, in one query", async (t) => {
  await inMixedBatch(t, async (c, rel) => {
    const got = await batchKeys(c, [rel.x, rel.y]);
    const ids = (relid: number): number[] => (JSON.parse(got.get(relid)?.keys ?? '[]') as { id: number }[]).map((k) => k.id).sort((p, q) => p - q);
    t.same(ids(rel.x), [1, 2, 3], 'x: each key once, though 1 changed twice, as objects by key column');
    t.equal(got.get(rel.x)?.n, 3, 'x: how many');
    t.same(ids(rel.y), [7], 'y: the key of its insert, none for its TRUNCATE');
    t.same([...(await batchKeys(c, [rel.y])).keys()], [rel.y], 'only the tables asked for');
    t.equal((await batchKeys(c, [])).size, 0, 'no tables: nothing');
  });
});

t.test("batchChangedKeys: the batch's changed keys of the tables asked for, each once with when it last changed, in one query", async (t) => {
  await inMixedBatch(t, async (c, rel) => {
    const changed = await c.query<{ id: number; at: string }>(
      `SELECT (pk->>'id')::int AS id, (extract(epoch FROM max(at)) * 1000000)::bigint::text AS at FROM repl.delta WHERE relid = $1 GROUP BY 1 ORDER BY 1`,
      [rel.x],
    );
    const got = await batchChangedKeys(c, [rel.x, rel.y], 'd.at');
    const keys = (relid: number): { id: number; at: string }[] =>
      (got.get(relid) ?? []).map((k) => ({ id: (JSON.parse(k.pk) as { id: number }).id, at: k.us })).sort((p, q) => p.id - q.id);
    t.same(keys(rel.x), changed.rows, 'x: each key once, though 1 changed twice, with its latest change');
    t.same(
      got
        .get(rel.x)
        ?.map((k) => k.pk)
        .sort(),
      ['{"id": 1}', '{"id": 2}', '{"id": 3}'],
      'x: as the capture trigger wrote them',
    );
    t.same(
      keys(rel.y).map((k) => k.id),
      [7],
      'y: the key of its insert, none for its TRUNCATE',
    );
    t.same([...(await batchChangedKeys(c, [rel.y], 'd.at')).keys()], [rel.y], 'only the tables asked for');
    t.equal((await batchChangedKeys(c, [], 'd.at')).size, 0, 'no tables: nothing');
  });
});

t.test("a node whose capra functions are older than this capra: a run's failure says to run capra install", async (t) => {
  const { job, rel, start } = await oneWayLane(t);
  // As a node installed by a capra before repl.batch_cut.
  await sql(job.urls.a!, 'DROP FUNCTION repl.batch_cut(pg_snapshot, pg_snapshot, text, oid[], int)');
  const cut = (): Promise<unknown> => withClient(job.urls.a!, (c) => batchCut(c, start, start, job.name, [rel.x], 10));
  const err = await cut().catch((e: unknown) => e);
  t.match(runFailureMessage(err), /repl\.batch_cut.*does not exist.*run capra install to upgrade them/, 'the missing function, and what to run');
  t.match(runFailureMessage(applyError('a', err)), /^a: .*run capra install/, 'also when the error names its node');
  const other = await sql(job.urls.a!, 'SELECT no_such_function()').catch((e: unknown) => e);
  t.notMatch(runFailureMessage(other), /capra install/, "a missing function outside schema repl is not capra's");
  await withClient(job.urls.a!, (c) => installSide(c, 'node', silentLogger));
  t.same(await cut(), { first: null, past: null }, 'capra install puts it back');
});
