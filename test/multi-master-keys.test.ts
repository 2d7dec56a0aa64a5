// Multi-master conflicts need each source's changed keys in one form, so
// that the same key changed on two sources is seen as one key. Keys of
// types whose JSON has one spelling are compared as the capture trigger
// wrote them, all tables' in one pass over the batch; the others (a time
// stamp, whose JSON follows the writer's TimeZone; a composite) are read
// into their types first (readBatch in sync/swap-sources.ts, keyTextCanonical
// in sync/key-types.ts).
import t, { type Test } from 'tap';
import type { LoggedConflict } from '../orchestrator/src/sync/swap-settle.js';
import { sql, testClusters } from './harness/db.js';
import { type Job, makeJob, setUp } from './harness/capra.js';
import { batchReads, sentDuring, swapRunner } from './harness/runs.js';

const [c1, c2] = testClusters().clusters;

// Each table: its key column(s), and SQL for the key of row g (1..40).
const tables: Record<string, { cols: string; key: string }> = {
  k_varchar: { cols: 'id varchar(12) PRIMARY KEY', key: `CASE g % 4 WHEN 0 THEN 'q''' || g WHEN 1 THEN 'b\\' || g WHEN 2 THEN 'é' || g ELSE g || '  ' END` },
  k_bigint: {
    cols: 'id bigint PRIMARY KEY',
    key: `CASE WHEN g = 1 THEN -9223372036854775808 WHEN g = 2 THEN 9223372036854775807 ELSE g::bigint * 1000000007 END`,
  },
  k_uuid: { cols: 'id uuid PRIMARY KEY', key: 'md5(g::text)::uuid' },
  k_ts: { cols: 'id timestamptz PRIMARY KEY', key: `timestamptz '2024-02-29 23:59:59.123456+00' + g * interval '1 second'` },
  k_mixed: { cols: 'a smallint, b text, c date, PRIMARY KEY (a, b, c)', key: `(g % 7)::smallint, 'x' || g, date '2000-01-01' + g` },
};
const names = Object.keys(tables);

/** A two-source sync (a, b) of `tables`, each with rows 1..40 on both nodes, and runSwap driven by hand (until idle; the conflicts it settled). */
async function twoSources(t: Test, only = names): Promise<{ job: Job; run: () => Promise<LoggedConflict[]> }> {
  const schema = only
    .map((name) => {
      const { cols, key } = tables[name]!;
      return `CREATE TABLE ${name} (${cols}, g int NOT NULL, who text NOT NULL); INSERT INTO ${name} SELECT ${key}, g, '-' FROM generate_series(1, 40) g;`;
    })
    .join('\n');
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: `syncs:\n  s:\n    sources: [a, b]\n    tables: { include: [${only.map((n) => `public.${n}`).join(', ')}] }\n    conflict: latest\n    copy_data: never`,
  });
  await setUp(job);
  const once = swapRunner(t, job);
  const run = async (): Promise<LoggedConflict[]> => {
    const settled: LoggedConflict[] = [];
    for (;;) {
      const r = await once();
      settled.push(...r.conflicts);
      if (!r.more && r.deltas === 0) return settled;
    }
  };
  return { job, run };
}

const contents = async (url: string, name: string): Promise<string> =>
  (await sql<{ d: string }>(url, `SELECT string_agg(t::text, '|' ORDER BY t::text) AS d FROM ${name} t`))[0]!.d;

t.test('the same key changed on both sources is one conflict, for every kind of key, whatever TimeZone each writer had', async (t) => {
  const { job, run } = await twoSources(t);
  for (const name of names) {
    await sql(job.urls.a!, `SET TimeZone = 'America/New_York'; UPDATE ${name} SET who = 'a' WHERE g <= 30`);
  }
  // b writes after a's commits returned: under `latest` its version of the keys both changed (g 11 to 30) wins.
  for (const name of names) {
    await sql(job.urls.b!, `SET TimeZone = 'Asia/Kolkata'; UPDATE ${name} SET who = 'b' WHERE g > 10`);
  }
  const settled = await run();
  const byTable = new Map<string, Set<string>>();
  for (const c of settled) {
    t.same(c.decision, { kind: 'winner', db: 'b' }, `${c.table} ${JSON.stringify(c.key)}: b's later version wins`);
    byTable.set(c.table, (byTable.get(c.table) ?? new Set()).add(JSON.stringify(c.key)));
  }
  t.same(
    Object.fromEntries([...byTable].map(([table, keys]) => [table, keys.size])),
    Object.fromEntries(names.map((name) => [`public.${name}`, 20])),
    'each table: one conflict for each of the 20 keys both sources changed',
  );
  t.equal(settled.length, 20 * names.length, 'and no other');
  for (const name of names) {
    const a = await contents(job.urls.a!, name);
    t.equal(await contents(job.urls.b!, name), a, `${name}: both nodes have the same rows`);
    t.same(
      await sql(job.urls.a!, `SELECT who, count(*)::int AS n FROM ${name} GROUP BY 1 ORDER BY 1`),
      [
        { who: 'a', n: 10 },
        { who: 'b', n: 30 },
      ],
      `${name}: a's version where only a changed the key, b's elsewhere`,
    );
  }
});

t.test(
  'with changes on both sources, each reads its changed keys in one pass for all its tables whose keys compare as written, and the apply takes them',
  async (t) => {
    const read = ['k_varchar', 'k_bigint', 'k_uuid', 'k_ts'];
    const { job, run } = await twoSources(t, read);
    for (const [db, rows] of [
      ['a', 'g <= 5'],
      ['b', 'g > 35'],
    ] as const) {
      await sql(job.urls[db]!, `BEGIN; ${read.map((n) => `UPDATE ${n} SET who = '${db}' WHERE ${rows};`).join(' ')} COMMIT`);
    }
    const { result: settled, sent } = await sentDuring(run);
    t.equal(
      batchReads(sent),
      6,
      "each source's batch read three times for its four tables: each table's changes (batchTables), the changed keys of the three whose keys compare as written at once (batchChangedKeys), and the time stamps' read into their type; the apply takes its keys from those",
    );
    for (const name of read) {
      t.same(
        await sql(job.urls.a!, `SELECT who, count(*)::int AS n FROM ${name} GROUP BY 1 ORDER BY 1`),
        [
          { who: '-', n: 30 },
          { who: 'a', n: 5 },
          { who: 'b', n: 5 },
        ],
        `${name}: a has its own and b's changes`,
      );
      t.equal(await contents(job.urls.b!, name), await contents(job.urls.a!, name), `${name}: both nodes have the same rows`);
    }
    t.same(settled, [], 'no conflicts');
  },
);
