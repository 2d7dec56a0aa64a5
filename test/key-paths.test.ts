// How a batch's keys are read and carried (sync/apply.ts): keys of some types
// are read from the delta's jsonb by ->> and a cast, others by
// jsonb_to_record; up to INDEX_LOOKUP_KEYS keys travel as JSON (to the
// target's DELETE, and back into the source's row fetch as a literal), more
// through a temp table, then looked up by a hash join when they are a large
// share of the table, and otherwise by the key index (as one array where
// the key allows it). Every combination must leave the target equal to the
// source, deletes included, for values that are easy to get wrong as text.
import t from 'tap';
import { Connections } from '../orchestrator/src/db/connections.js';
import { serverMajor } from '../orchestrator/src/db/server-major.js';
import { ARRAY_SCAN_MAJOR, INDEX_LOOKUP_KEYS, keyArray, keyLookup, useKeyIndex } from '../orchestrator/src/sync/apply.js';
import { type LaneState, runLane } from '../orchestrator/src/sync/lane.js';
import { matchOnTarget, sourceTables } from '../orchestrator/src/sync/table-meta.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters } from './harness/db.js';
import { makeJob, setUp } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const many = INDEX_LOOKUP_KEYS + 500;

// Each table: its key type's column(s), and SQL for the key of row g (1..many).
const tables: Record<string, { cols: string; key: string }> = {
  // Read as text: varchar with a length, with quotes, backslashes, trailing spaces and non-ASCII.
  k_varchar: { cols: 'id varchar(12) PRIMARY KEY', key: `CASE g % 4 WHEN 0 THEN 'q''' || g WHEN 1 THEN 'b\\' || g WHEN 2 THEN 'é' || g ELSE g || '  ' END` },
  k_bigint: {
    cols: 'id bigint PRIMARY KEY',
    key: `CASE WHEN g = 1 THEN -9223372036854775808 WHEN g = 2 THEN 9223372036854775807 ELSE g::bigint * 1000000007 END`,
  },
  k_uuid: { cols: 'id uuid PRIMARY KEY', key: `md5(g::text)::uuid` },
  // Read by jsonb_to_record: a time stamp (to_jsonb writes it in ISO form) and a composite key mixing both kinds.
  k_ts: { cols: 'id timestamptz PRIMARY KEY', key: `timestamptz '2024-02-29 23:59:59.123456+00' + g * interval '1 second'` },
  k_mixed: { cols: 'a smallint, b text, c date, PRIMARY KEY (a, b, c)', key: `(g % 100)::smallint, 'x' || (g / 100), date '2000-01-01' + g` },
};

t.test('keys read as text and by jsonb_to_record, few and many, apply exactly (deletes too)', async (t) => {
  const schema = Object.entries(tables)
    .map(([name, { cols }]) => `CREATE TABLE ${name} (${cols}, v int NOT NULL);`)
    .join('\n');
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'batch_rows: 100000\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]',
  });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const lane = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const state: LaneState = {};
  const contents = async (url: string, name: string): Promise<{ n: number; h: string | null }> =>
    (await sql<{ n: number; h: string | null }>(url, `SELECT count(*)::int AS n, md5(string_agg(t::text, '|' ORDER BY t::text)) AS h FROM ${name} t`))[0]!;
  const check = async (what: string, rowsLeft = true): Promise<void> => {
    for (;;) {
      const r = await runLane(conns, lane, 100_000, state);
      if (!r.more) break;
    }
    for (const name of Object.keys(tables)) {
      const [a, b] = [await contents(job.urls.a!, name), await contents(job.urls.b!, name)];
      t.equal(a.n > 0, rowsLeft, `${what}: ${name} has ${a.n} rows on the source`);
      t.same(b, a, `${what}: ${name} on the target equals the source`);
    }
  };

  // A few keys per table: they travel as JSON.
  for (const [name, { key }] of Object.entries(tables)) {
    await sql(job.urls.a!, `INSERT INTO ${name} SELECT ${key}, g FROM generate_series(1, 40) g`);
  }
  await check('a few inserted keys');
  // Many keys per table in one transaction each (one batch, above INDEX_LOOKUP_KEYS): a temp table of keys,
  // updates of the few and inserts of the rest.
  for (const [name, { key }] of Object.entries(tables)) {
    await sql(job.urls.a!, `INSERT INTO ${name} SELECT ${key}, g FROM generate_series(41, ${many}) g`);
    await sql(job.urls.a!, `UPDATE ${name} SET v = v + 1`);
  }
  await check(`${many} updated keys`);
  // Most of each table's rows at once: hash-joined.
  for (const name of Object.keys(tables)) {
    await sql(job.urls.a!, `UPDATE ${name} SET v = -v WHERE v % 3 <> 0`);
    await sql(job.urls.a!, `DELETE FROM ${name} WHERE v % 3 = 0`);
  }
  await check('most keys updated or deleted');
  for (const name of Object.keys(tables)) await sql(job.urls.a!, `DELETE FROM ${name}`);
  await check('every key deleted', false);
});

// Keys that are a small share of a large table are looked up by its key
// index (useKeyIndex): as one array where the key is one column of a plain
// type in a table partitioned on neither side (keyArray), joined key by key
// otherwise. Both must apply exactly, with keys that are easy to get wrong.
const indexedRows = 30_000;
const indexed: Record<string, { cols: string; key: string; array: boolean; partitions?: string }> = {
  i_varchar: { cols: 'id varchar(12) PRIMARY KEY', key: `CASE g % 3 WHEN 0 THEN 'q''' || g WHEN 1 THEN 'é' || g ELSE g || '  ' END`, array: true },
  i_bigint: { cols: 'id bigint PRIMARY KEY', key: `g::bigint * 1000000007 - 9000000000000000000`, array: true },
  i_uuid: { cols: 'id uuid PRIMARY KEY', key: `md5(g::text)::uuid`, array: true },
  i_pair: { cols: 'a int, b text, PRIMARY KEY (a, b)', key: `g % 7, 'x' || g`, array: false },
  i_intarr: { cols: 'id int[] PRIMARY KEY', key: `ARRAY[g, -g]`, array: false },
  i_parted: {
    cols: 'id int PRIMARY KEY',
    key: 'g',
    array: false,
    partitions: `PARTITION BY RANGE (id); CREATE TABLE i_parted_1 PARTITION OF i_parted FOR VALUES FROM (MINVALUE) TO (15000);
                 CREATE TABLE i_parted_2 PARTITION OF i_parted FOR VALUES FROM (15000) TO (MAXVALUE)`,
  },
};

t.test('keys looked up by the key index, as one array or joined, apply exactly (deletes too)', async (t) => {
  const schema = Object.entries(indexed)
    .map(
      ([name, { cols, key, partitions }]) =>
        `CREATE TABLE ${name} (${cols}, v int NOT NULL) ${partitions ?? ''};
         INSERT INTO ${name} SELECT ${key}, g FROM generate_series(1, ${indexedRows}) g; ANALYZE ${name};`,
    )
    .join('\n');
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'batch_rows: 100000\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never',
  });
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const lane = { job: job.name, sync: job.cfg.syncs.s!, source: 'a', target: 'b' };
  const state: LaneState = {};

  // A sixth of each table's keys changed in one batch: more than go as JSON, few enough for the key index.
  const changed = indexedRows / 6;
  // Then two fifths of the rows: by the key index as one array where the servers are of PostgreSQL 17 or later, hash-joined otherwise.
  const twoFifths = (indexedRows - changed / 2 + 100) * 0.4;
  const source = await conns.connect('a');
  const target = await conns.connect('b');
  try {
    const majors = [await serverMajor(source), await serverMajor(target)];
    const relids = await sql<{ relid: number; name: string }>(
      job.urls.a!,
      `SELECT c.oid::int AS relid, c.relname AS name FROM pg_class c WHERE c.relname = ANY ($1::text[])`,
      [Object.keys(indexed)],
    );
    const keys = new Map(relids.map((r) => [r.relid, r.name === 'i_pair' ? ['a', 'b'] : ['id']]));
    for (const meta of await matchOnTarget(target, await sourceTables(source, [...keys.keys()]), keys, 'b')) {
      const n = changed + 100;
      t.ok(n > INDEX_LOOKUP_KEYS && useKeyIndex(meta, n), `${meta.table}: ${n} keys are looked up by the key index`);
      const want = indexed[meta.table]!.array;
      t.equal(keyArray(meta, n, meta.partitioned) && keyArray(meta, n, meta.targetPartitioned), want, `${meta.table}: ${want ? 'as one array' : 'joined'}`);
      const [onSource, onTarget] = [keyLookup(meta, twoFifths, meta.partitioned, majors[0]!), keyLookup(meta, twoFifths, meta.targetPartitioned, majors[1]!)];
      const arrays = want && majors.every((m) => m >= ARRAY_SCAN_MAJOR);
      t.same([onSource, onTarget], Array(2).fill({ indexed: arrays, array: arrays }), `${meta.table}, two fifths: ${arrays ? 'as one array' : 'hash-joined'}`);
    }
  } finally {
    source.release();
    target.release();
  }

  const contents = async (url: string, name: string): Promise<{ n: number; h: string | null }> =>
    (await sql<{ n: number; h: string | null }>(url, `SELECT count(*)::int AS n, md5(string_agg(t::text, '|' ORDER BY t::text)) AS h FROM ${name} t`))[0]!;
  for (const [name, { key }] of Object.entries(indexed)) {
    await sql(
      job.urls.a!,
      `BEGIN;
       UPDATE ${name} SET v = -v WHERE v % 6 = 0 AND v % 12 <> 0;
       DELETE FROM ${name} WHERE v % 12 = 0;
       INSERT INTO ${name} SELECT ${key}, g FROM generate_series(${indexedRows + 1}, ${indexedRows + 100}) g;
       COMMIT`,
    );
  }
  const r = await runLane(conns, lane, 100_000, state);
  t.equal(r.deltas, Object.keys(indexed).length * (changed + 100), 'one batch of every change');
  for (const name of Object.keys(indexed)) {
    const [a, b] = [await contents(job.urls.a!, name), await contents(job.urls.b!, name)];
    t.equal(a.n, indexedRows - changed / 2 + 100, `${name}: ${a.n} rows left on the source`);
    t.same(b, a, `${name} on the target equals the source`);
  }
  // Every row whose v ends in 1, 2, 6 or 7 (two fifths of them), updated in one batch.
  for (const name of Object.keys(indexed)) await sql(job.urls.a!, `UPDATE ${name} SET v = v * 2 WHERE abs(v) % 5 IN (1, 2)`);
  const most = await runLane(conns, lane, 100_000, state);
  t.equal(most.deltas, Object.keys(indexed).length * twoFifths, 'one batch of two fifths of every table');
  for (const name of Object.keys(indexed))
    t.same(await contents(job.urls.b!, name), await contents(job.urls.a!, name), `${name}, two fifths: the target equals the source`);
});
