// capra compare and capra repair on a one-way sync, with three key shapes:
// drift injected on the target behind the sync's back is found key by key,
// exactly, while a writer keeps changing the source and the daemon keeps
// applying; repair mends it through the apply path; compare then agrees.
import t from 'tap';
import { compareSync } from '../orchestrator/src/compare/compare.js';
import { repairSync } from '../orchestrator/src/compare/repair.js';
import type { TableResult } from '../orchestrator/src/compare/table-compare.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { cli, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int, body text);
  CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
  CREATE TABLE docs (id uuid PRIMARY KEY, title text, blob bytea);
`;

/** Writes on `url` in a transaction the capture trigger skips (an applier's mark): drift behind the sync's back. */
const behind = (url: string, text: string): Promise<unknown> => sql(url, `BEGIN; SELECT set_config('capra.origin', 'drift', true); ${text}; COMMIT`);

const uuid = (n: number): string => `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;

/** table -> sorted "kind key" lines of the results. */
function found(results: TableResult[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of results) {
    const lines = [
      ...r.missing.map((d) => `missing ${Object.values(d.key).join('/')}`),
      ...r.extra.map((d) => `extra ${Object.values(d.key).join('/')}`),
      ...r.different.map((d) => `different ${Object.values(d.key).join('/')}`),
    ];
    out[r.table] = lines.sort();
  }
  return out;
}

const injected = {
  'public.items': ['different 3', 'different 4', 'different 5', 'extra 100001', 'missing 2'],
  'public.pairs': ['different 7/x', 'extra 9999/z', 'missing 1/y'],
  'public.docs': [`different ${uuid(4)}`, `extra ${uuid(99999)}`, `missing ${uuid(1)}`],
};

t.test('one-way: drift found key by key under live writes, repaired, then none', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items, public.pairs, public.docs] }\n    copy_data: never',
  });
  await setUp(job);
  startDaemon(t, job);
  const a = job.urls.a!;
  const b = job.urls.b!;
  await sql(a, `INSERT INTO items SELECT g, 'item ' || g, g, CASE WHEN g = 5 THEN repeat('x', 300000) END FROM generate_series(1, 20000) g`);
  await sql(a, `UPDATE items SET name = NULL WHERE id = 4`);
  await sql(a, `INSERT INTO pairs SELECT g % 500, chr(120 + g % 3), 'v' || g FROM generate_series(1, 1500) g ON CONFLICT DO NOTHING`);
  await sql(
    a,
    `INSERT INTO docs SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 't' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g`,
  );
  for (const table of ['items', 'pairs', 'docs']) await waitSame(job, table, ['a', 'b']);

  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const sync = job.cfg.syncs.s!;
  t.same(
    found(await compareSync(conns, job.name, sync, {}, silentLogger)),
    { 'public.docs': [], 'public.items': [], 'public.pairs': [] },
    'in step: nothing differs',
  );

  await behind(b, `DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (100001, 'extra', 1, NULL); UPDATE items SET qty = -1 WHERE id = 3`);
  await behind(b, `UPDATE items SET name = '' WHERE id = 4`); // NULL on a, '' on b
  await behind(b, `UPDATE items SET body = repeat('x', 299999) || 'y' WHERE id = 5`); // only the end of a large value differs
  await behind(
    b,
    `DELETE FROM pairs WHERE a = 1 AND b = 'y'; INSERT INTO pairs VALUES (9999, 'z', 'extra'); UPDATE pairs SET v = 'changed' WHERE a = 7 AND b = 'x'`,
  );
  await behind(
    b,
    `DELETE FROM docs WHERE id = '${uuid(1)}'; INSERT INTO docs VALUES ('${uuid(99999)}', 'extra', NULL); UPDATE docs SET blob = blob || '\\x00' WHERE id = '${uuid(4)}'`,
  );

  // A writer keeps changing other keys on the source while the daemon applies them.
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      await sql(a, `UPDATE items SET qty = qty + 1 WHERE id IN (SELECT 100 + (random() * 19000)::int FROM generate_series(1, 20))`);
      await sql(a, `UPDATE pairs SET v = v || '.' WHERE a BETWEEN 100 AND 400 AND a % 17 = ${i % 17}`);
      await sql(a, `UPDATE docs SET title = title || '.' WHERE id = '${uuid(100 + (i % 2000))}'`);
      await sql(a, `INSERT INTO items VALUES (${200000 + i}, 'new', 0, NULL)`);
    }
  })();
  try {
    for (let run = 1; run <= 4; run++) {
      t.same(found(await compareSync(conns, job.name, sync, {}, silentLogger)), injected, `run ${run}: exactly the injected keys, none of the writer's`);
    }
  } finally {
    writing = false;
    await writer;
  }

  const dry = await repairSync(conns, job.name, sync, { dryRun: true }, silentLogger);
  t.equal(dry.actions.length, 11, 'dry run: one action per injected key');
  t.ok(
    dry.actions.every((x) => x.node === 'b' && x.from === 'a'),
    'one-way: the source wins',
  );
  t.same(found(await compareSync(conns, job.name, sync, {}, silentLogger)), injected, 'the dry run changed nothing');

  const cmp = await cli(['--config', job.configPath, 'compare', '--tables', 'items', '--nodes', 'a,b']);
  t.equal(cmp.code, 1, 'compare exits 1 when a table differs');
  t.match(cmp.stdout, /s: public\.items: a -> b: \d+ rows compared, 1 missing on b, 1 extra on b, 3 different/);
  const json = await cli(['--config', job.configPath, 'compare', '--tables', 'docs', '--json']);
  const docs = JSON.parse(json.stdout) as TableResult[];
  t.same(
    docs[0]!.different.map((d) => [d.key, (d.reference as { blob: string }).blob !== (d.node as { blob: string }).blob]),
    [[{ id: uuid(4) }, true]],
    '--json: both versions of a different row',
  );

  const json2 = await cli(['--config', job.configPath, 'repair', '--dry-run', '--json', '--tables', 'pairs']);
  t.same(
    (JSON.parse(json2.stdout) as { actions: { key: Record<string, string> }[] }).actions.map((x) => x.key).sort((p, q) => Number(p.a) - Number(q.a)),
    [
      { a: '1', b: 'y' },
      { a: '7', b: 'x' },
      { a: '9999', b: 'z' },
    ],
    'repair --dry-run --json: the composite keys it would repair',
  );
  const rep = await cli(['--config', job.configPath, 'repair']);
  t.equal(rep.code, 0, rep.stderr);
  t.match(rep.stdout, /repair: 11 key\(s\) repaired/);
  t.equal((await sql(b, 'SELECT count(*)::int AS n FROM repl.delta'))[0]!.n, 0, 'the repair was not captured on the target');
  const after = await cli(['--config', job.configPath, 'compare']);
  t.equal(after.code, 0, after.stdout);
  t.match(after.stdout, /compare: all 3 table comparison\(s\) agree/);
  for (const table of ['items', 'pairs', 'docs']) await waitSame(job, table, ['a', 'b']);
  const again = await cli(['--config', job.configPath, 'repair']);
  t.match(again.stdout, /repair: nothing to do, the databases agree/, 'a second repair has nothing to do');
});

t.test('an agreeing compare reads each row once per node, by a sequential scan; drift across bins is found', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    // pairs: a composite key whose first column has 100 values, so bins are ranges of it (bin-scan.ts).
    schema: 'CREATE TABLE big (id bigint PRIMARY KEY, v text); CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b))',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.big, public.pairs] }\n    copy_data: never',
  });
  await setUp(job);
  const rows = 30_000;
  for (const n of ['a', 'b']) {
    await behind(
      job.urls[n]!,
      `INSERT INTO big SELECT g, repeat('v', g % 40) FROM generate_series(1, ${rows}) g;
       INSERT INTO pairs SELECT g % 100, g, 'p' || g FROM generate_series(1, ${rows}) g`,
    );
    await sql(job.urls[n]!, 'VACUUM ANALYZE big, pairs');
  }
  const reads = async (n: string): Promise<{ seq: number; idx: number }> =>
    (
      await sql<{ seq: number; idx: number }>(
        job.urls[n]!,
        `SELECT pg_stat_clear_snapshot(), sum(seq_tup_read)::int AS seq, sum(coalesce(idx_tup_fetch, 0))::int AS idx
           FROM pg_stat_user_tables WHERE relname IN ('big', 'pairs')`,
      )
    )[0]!;
  const before = { a: await reads('a'), b: await reads('b') };
  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const sync = job.cfg.syncs.s!;
  const results = await compareSync(conns, job.name, sync, {}, silentLogger);
  // A backend's reads are counted at the latest when it exits (a moment later before PostgreSQL 15).
  await conns.close();
  t.same(found(results), { 'public.big': [], 'public.pairs': [] }, 'the nodes agree');
  t.same(
    results.map((r) => r.rows),
    [rows, rows],
    'every row compared',
  );
  await waitFor(async () => (await reads('a')).seq - before.a.seq >= 2 * rows && (await reads('b')).seq - before.b.seq >= 2 * rows, {
    what: 'the scans to be counted',
  });
  const after = { a: await reads('a'), b: await reads('b') };
  t.equal(after.b.seq - before.b.seq, 2 * rows, 'b read each row once');
  // The reference also samples its keys for the bins' bounds: a few pages.
  t.ok(after.a.seq - before.a.seq < 2 * rows * 1.05, `a read each row once, plus a sample of the bounds (${after.a.seq - before.a.seq} rows)`);
  t.equal(after.a.idx - before.a.idx + after.b.idx - before.b.idx, 0, 'no row fetched by an index');

  // Drift below, inside and above the sampled bounds, on both tables.
  await behind(
    job.urls.b!,
    `DELETE FROM big WHERE id IN (1, 15000); UPDATE big SET v = v || '!' WHERE id = 29999; INSERT INTO big VALUES (0, 'x'), (40000, 'y');
     DELETE FROM pairs WHERE (a, b) = (1, 1); UPDATE pairs SET v = NULL WHERE (a, b) = (50, 15050); INSERT INTO pairs VALUES (-1, 0, 'z'), (100, 0, 'w')`,
  );
  t.same(
    found(await compareSync(conns, job.name, sync, {}, silentLogger)),
    {
      'public.big': ['different 29999', 'extra 0', 'extra 40000', 'missing 1', 'missing 15000'],
      'public.pairs': ['different 50/15050', 'extra -1/0', 'extra 100/0', 'missing 1/1'],
    },
    'drift in the first and last bins and between them is found key by key',
  );
});

t.test('compare refuses a table whose shape makes its target differ by design, naming it', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE plain (id int PRIMARY KEY, v text); CREATE TABLE part (id int PRIMARY KEY, region text)',
    yaml: [
      'syncs:',
      '  s:',
      '    sources: [a]',
      '    targets: [b]',
      '    tables:',
      '      include: [public.plain, public.part]',
      '      options:',
      '        public.part: { where: "region = \'eu\'" }',
    ].join('\n'),
  });
  await setUp(job);
  const all = await cli(['--config', job.configPath, 'compare']);
  t.not(all.code, 0, 'compare of every table fails');
  t.match(all.stderr, /^capra: [^\n]*tables\.options[^\n]*public\.part[^\n]*\n$/, `one line naming the shaped table: ${all.stderr}`);
  const other = await cli(['--config', job.configPath, 'compare', '--tables', 'plain']);
  t.equal(other.code, 0, `the other table is compared: ${other.stderr}`);
});
