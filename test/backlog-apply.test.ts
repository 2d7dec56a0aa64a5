// How a lane works off a backlog: batches that grow while runs are cut short
// (sync/batch-size.ts), each still ending at a transaction boundary, and
// keys looked up by the table's key index unless they are a large share of
// it (useKeyIndex in sync/apply.ts), so that no batch reads a whole table and
// a backlog's cost grows with its size, not with its size times the table's.
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { ARRAY_SCAN_MAJOR, INDEX_LOOKUP_KEYS, KEY_ARRAY_MAX, keyLookup, useKeyIndex } from '../orchestrator/src/sync/apply.js';
import { MAX_BATCH_GROWTH, afterRun, batchSize } from '../orchestrator/src/sync/batch-size.js';
import { type LaneState, type RunResult, runLane } from '../orchestrator/src/sync/lane.js';
import type { TableMeta } from '../orchestrator/src/sync/table-meta.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { makeJob, setUp } from './harness/capra.js';
import { batchReads, sentDuring } from './harness/runs.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

t.test('a batch doubles while runs are cut short, up to a limit, and falls back once one is not', async (t) => {
  const state: LaneState = {};
  const sizes: number[] = [];
  for (let i = 0; i < 7; i++) {
    sizes.push(batchSize(100, state));
    afterRun(state, true);
  }
  t.same(
    sizes,
    [100, 200, 400, 800, 1600, 1600, 1600].map((n) => Math.min(n, 100 * MAX_BATCH_GROWTH)),
    'doubling, capped',
  );
  afterRun(state, false);
  t.equal(batchSize(100, state), 100, 'back to batch_rows');
});

t.test('keys are looked up by index unless they are a large share of the table', async (t) => {
  const table = (estimatedRows: number): TableMeta =>
    ({
      schema: 'public',
      table: 'x',
      relid: 1,
      keyCols: ['id'],
      keyTypes: ['int'],
      columns: ['id'],
      partitioned: false,
      targetPartitioned: false,
      estimatedRows,
    }) as TableMeta;
  t.ok(useKeyIndex(table(0), INDEX_LOOKUP_KEYS), 'a few keys: always by index');
  t.ok(useKeyIndex(table(1_000_000), 10_000), '10,000 keys of 1,000,000 rows: by index');
  t.notOk(useKeyIndex(table(1_000_000), 900_000), '900,000 keys of 1,000,000 rows: a scan of the table');
  t.notOk(useKeyIndex(table(0), INDEX_LOOKUP_KEYS + 1), 'a table never analyzed and empty: a scan');
});

t.test('keys of one plain column go to the key index as one array, up to half the table from PostgreSQL 17', async (t) => {
  const table = (keyTypes: string[], estimatedRows = 100_000): TableMeta =>
    ({
      schema: 'public',
      table: 'x',
      relid: 1,
      keyCols: keyTypes.map((_, i) => `k${i}`),
      keyTypes,
      columns: ['k0', 'k1'],
      partitioned: false,
      targetPartitioned: false,
      estimatedRows,
    }) as TableMeta;
  const int = table(['integer']);
  t.same(keyLookup(int, 20_000, false, 15), { indexed: true, array: true }, 'a fifth of the table, before 17: by the index, as one array');
  t.same(keyLookup(int, 40_000, false, 15), { indexed: false, array: false }, 'two fifths, before 17: hash-joined');
  t.same(keyLookup(int, 40_000, false, ARRAY_SCAN_MAJOR), { indexed: true, array: true }, 'two fifths from 17: by the index, as one array');
  t.same(keyLookup(int, 60_000, false, 18), { indexed: false, array: false }, 'three fifths from 17: hash-joined');
  t.same(keyLookup(int, 40_000, true, 18), { indexed: false, array: false }, 'a partitioned table: not as an array, so hash-joined at two fifths');
  t.same(keyLookup(int, 20_000, true, 18), { indexed: true, array: false }, 'a partitioned table: joined key by key at a fifth');
  const pair = table(['integer', 'text']);
  t.same(keyLookup(pair, 40_000, false, 18), { indexed: false, array: false }, 'a two-column key: hash-joined at two fifths');
  t.same(keyLookup(pair, 20_000, false, 18), { indexed: true, array: false }, 'a two-column key: joined key by key at a fifth');
  t.same(keyLookup(table(['integer[]']), 20_000, false, 18), { indexed: true, array: false }, 'an array-typed key: joined key by key');
  for (const type of ['smallint', 'bigint', 'text', 'uuid', 'character varying(12)'])
    t.ok(keyLookup(table([type]), 20_000, false, 18).array, `a ${type} key: as one array`);
  const huge = table(['bigint'], 10_000_000);
  t.same(keyLookup(huge, KEY_ARRAY_MAX, false, 18), { indexed: true, array: true }, 'KEY_ARRAY_MAX keys: as one array');
  t.same(keyLookup(huge, KEY_ARRAY_MAX + 1, false, 18), { indexed: true, array: false }, 'more: joined key by key');
  t.same(keyLookup(int, 20, false, 18), { indexed: true, array: true }, 'a few keys: as one array');
});

t.test('a backlog in a lane: growing batches, each a whole number of transactions, and no table read whole for 15% of its keys', async (t) => {
  const rows = 40_000;
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: `CREATE TABLE x (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO x SELECT g, 0 FROM generate_series(1, ${rows}) g; ANALYZE x;`,
    yaml: 'batch_rows: 1000\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never',
  });
  await setUp(job);
  const [a, b] = [job.urls.a!, job.urls.b!];
  // The backlog: 6,000 keys updated in transactions of 300 and
  // 700 rows, so batches of 1,000, 2,000, ... rows can only end between them.
  const sizes = [300, 700];
  let from = 1;
  const txRows: number[] = [];
  for (let i = 0; from <= 6_000; i++) {
    const n = sizes[i % 2]!;
    await sql(a, `UPDATE x SET v = v + 1 WHERE id BETWEEN $1 AND $2`, [from, from + n - 1]);
    txRows.push(n);
    from += n;
  }
  const stats = async (url: string): Promise<{ seq: number; idx: number }> =>
    (
      await sql<{ seq: number; idx: number }>(
        url,
        `SELECT seq_scan::int AS seq, coalesce(idx_scan, 0)::int AS idx FROM pg_stat_user_tables WHERE relname = 'x'`,
      )
    )[0]!;

  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const state: LaneState = {};
  const batches: number[] = [];
  for (;;) {
    // Sized as the daemon's lane worker sizes its runs.
    const r = await runLane(conns, key, batchSize(job.cfg.batchRows, state), state);
    afterRun(state, r.more);
    if (r.deltas > 0) batches.push(r.deltas);
    if (!r.more) break;
  }
  t.equal(
    batches.reduce((x, y) => x + y, 0),
    6_000,
    `every change applied once (batches of ${batches.join(', ')} rows)`,
  );
  t.ok(batches.length < 6, `fewer runs than batch_rows alone would take (${batches.length})`);
  t.ok(
    batches.slice(1).some((n, i) => n > batches[i]!),
    'a later batch is larger than the one before',
  );
  // Each batch is a run of whole transactions: its rows are a sum of consecutive transactions' rows.
  let tx = 0;
  for (const n of batches) {
    let sum = 0;
    while (sum < n && tx < txRows.length) sum += txRows[tx++]!;
    t.equal(sum, n, `a batch of ${n} rows ends at a transaction boundary`);
  }

  // One transaction of 6,000 keys (above INDEX_LOOKUP_KEYS, 15% of the table): a batch of its own, whole.
  const before = { a: await stats(a), b: await stats(b) };
  await sql(a, 'UPDATE x SET v = v + 1 WHERE id BETWEEN 20001 AND 26000');
  const big = await runLane(conns, key, job.cfg.batchRows, state);
  t.equal(big.deltas, 6_000, 'one transaction is one batch, however much larger than batch_rows');
  // The statistics are flushed with a delay, and before PostgreSQL 15 an idle session may hold its counts
  // back until it ends: end the lane's sessions, then wait until the index lookups show.
  await conns.close();
  await waitFor(async () => (await stats(b)).idx > before.b.idx && (await stats(a)).idx > before.a.idx, {
    what: 'index scans counted on both nodes',
    timeoutMs: 10_000,
  });
  t.equal((await stats(a)).seq, before.a.seq, 'the source table was never scanned whole');
  t.equal((await stats(b)).seq, before.b.seq, 'the target table was never scanned whole');
  t.same(
    await sql(b, 'SELECT count(*)::int AS n, sum(v)::int AS s FROM x'),
    await sql(a, 'SELECT count(*)::int AS n, sum(v)::int AS s FROM x'),
    'the target has the source rows',
  );
});

t.test("keys that go as one array leave the join settings alone, keys joined to the table set them, and small tables' keys are read at once", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: `CREATE TABLE one (id int PRIMARY KEY, v int NOT NULL);
             CREATE TABLE two (a int, b text, v int NOT NULL, PRIMARY KEY (a, b));
             INSERT INTO one SELECT g, 0 FROM generate_series(1, 1000) g;
             INSERT INTO two SELECT g, 'k', 0 FROM generate_series(1, 1000) g; ANALYZE one, two;`,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never',
  });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const key = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  // What the last run sent, on every connection.
  let sent: string[] = [];
  const record = async (only: string, write: string): Promise<RunResult> => {
    const run = await sentDuring(() => sql(job.urls.a!, write).then(() => runLane(conns, key, job.cfg.batchRows, {})));
    sent = run.sent;
    t.ok(
      sent.some((s) => s.includes(only)),
      `the run applied ${only}`,
    );
    return run.result;
  };
  const joinSettings = (): string[] => sent.filter((s) => /set_config\('enable_(hash|merge|nest)/.test(s));

  t.equal((await record('"one"', 'UPDATE one SET v = v + 1 WHERE id <= 10')).rows, 10, 'a one-column integer key: applied');
  t.same(joinSettings(), [], 'as one array: no join settings sent to either server');
  t.equal((await record('"two"', 'UPDATE two SET v = v + 1 WHERE a <= 10')).rows, 10, 'a two-column key: applied');
  t.equal(joinSettings().length, 4, 'joined key by key: hash and merge joins off, then on again, on the source and on the target');
  const both = await record('"two"', 'BEGIN; UPDATE one SET v = v + 1 WHERE id <= 5; UPDATE two SET v = v + 1 WHERE a <= 5; COMMIT');
  t.equal(both.rows, 10, 'both tables in one transaction: applied');
  t.equal(
    batchReads(sent),
    2,
    "the batch read twice, whatever the number of tables: each table's changes (batchTables), and every table's keys at once (batchKeys)",
  );
  t.same(
    await sql(job.urls.b!, 'SELECT (SELECT sum(v) FROM one)::int AS one, (SELECT sum(v) FROM two)::int AS two'),
    [{ one: 15, two: 15 }],
    "the target has both tables' changes",
  );
});
