// A multi-master run gives a source's batch to all its receivers at once:
// the source reads the keys and the rows once, and its COPY out feeds every
// receiver's COPY in (applyKeysTo in sync/apply.ts, Tee in sync/tee.ts).
// Receivers that take the table differently (columns in another order) are
// served apart; a receiver whose COPY fails fails the run under its own
// name, and no receiver keeps anything of that run.
import t from 'tap';
import { sql, testClusters, waitFor } from './harness/db.js';
import { makeJob, setUp, startDaemon } from './harness/capra.js';
import { batchReads, sentDuring, swapRunner } from './harness/runs.js';

const [c1, c2, c3] = testClusters().clusters;

/** The table's rows, columns named, as text: equal on two nodes whatever their column order. */
async function rows(url: string): Promise<string> {
  const r = await sql<{ d: string | null }>(url, `SELECT string_agg(format('%s|%s|%s', id, v, pad), E'\\n' ORDER BY id) AS d FROM x`);
  return r[0]?.d ?? '';
}

async function waitRows(urls: string[], what: string): Promise<void> {
  await waitFor(
    async () => {
      const all = await Promise.all(urls.map(rows));
      return all.every((d) => d === all[0]);
    },
    { what, timeoutMs: 60_000 },
  );
}

t.test("a source's batch reaches every receiver, whatever each one's column order", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3!, d: c1! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text, pad text)',
    yaml: 'syncs:\n  s:\n    sources: [a, b, c, d]',
  });
  // On c the columns come in another order, so c is given its own COPY.
  await sql(job.urls.c!, 'DROP TABLE x; CREATE TABLE x (pad text, v text, id int PRIMARY KEY)');
  await setUp(job);
  startDaemon(t, job);
  const urls = ['a', 'b', 'c', 'd'].map((n) => job.urls[n]!);
  // More keys than travel as one parameter (INDEX_LOOKUP_KEYS): through each receiver's temp table.
  await sql(job.urls.a!, `INSERT INTO x (id, v, pad) SELECT g, 'a' || g, repeat('p', g % 50) FROM generate_series(1, 6000) g`);
  await waitRows(urls, 'the 6,000 rows from a on every node');
  // A few keys: as one parameter. Updates, deletes and inserts, from two sources in one run.
  await sql(job.urls.b!, `UPDATE x SET v = 'b' WHERE id <= 10; DELETE FROM x WHERE id BETWEEN 11 AND 20; INSERT INTO x VALUES (7001, 'b new', NULL)`);
  await sql(job.urls.c!, `UPDATE x SET v = 'c' WHERE id BETWEEN 21 AND 30`);
  await waitRows(urls, "b's and c's changes on every node");
  const [counts] = await sql<{ n: number; b: number; c: number; gone: number; fresh: number }>(
    job.urls.d!,
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE v = 'b')::int AS b, count(*) FILTER (WHERE v = 'c')::int AS c,
            (SELECT count(*)::int FROM generate_series(11, 20) g WHERE NOT EXISTS (SELECT 1 FROM x WHERE id = g)) AS gone,
            count(*) FILTER (WHERE id = 7001 AND pad IS NULL)::int AS fresh
       FROM x`,
  );
  t.same(counts, { n: 5991, b: 10, c: 10, gone: 10, fresh: 1 }, 'd has every change, from each source');
  t.equal(await rows(job.urls.c!), await rows(job.urls.a!), 'c, with its own column order, has the same rows as a');
});

t.test("a receiver's failed COPY fails the run naming that receiver; the others keep nothing of it", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text, pad text)',
    yaml: 'syncs:\n  s:\n    sources: [a, b, c]',
  });
  // Only c refuses a second 'taken' (its row 100, never captured).
  await sql(job.urls.c!, `ALTER TABLE x ADD UNIQUE (v); INSERT INTO x VALUES (100, 'taken', NULL)`);
  await setUp(job);
  startDaemon(t, job);
  // Once a row has reached b and c, the initial copies are done: row 1 can only travel by a run.
  await sql(job.urls.a!, `INSERT INTO x VALUES (2, 'free', NULL)`);
  for (const n of ['b', 'c']) await waitFor(async () => (await sql(job.urls[n]!, 'SELECT 1 FROM x WHERE id = 2')).length > 0, { what: `row 2 on ${n}` });
  await sql(job.urls.a!, `INSERT INTO x VALUES (1, 'taken', NULL)`);
  await waitFor(async () => (await sql(job.cfg.metadata, 'SELECT 1 FROM repl.lane WHERE error IS NOT NULL')).length > 0, {
    what: 'the failure to be recorded',
  });
  const errors = await sql<{ error: string }>(job.cfg.metadata, 'SELECT DISTINCT error FROM repl.lane WHERE error IS NOT NULL');
  t.ok(errors.length > 0, 'the failure is recorded');
  for (const { error } of errors)
    t.match(error, /^table public\.x on c: duplicate key value violates unique constraint "x_v_key"/, 'it names c, whose COPY failed');
  t.same(await sql(job.urls.b!, 'SELECT id FROM x WHERE id = 1'), [], 'b, which took the row in the same run, kept nothing of it');
});

t.test("a source reads its small tables' keys once for all of them, and they reach every receiver", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: `CREATE TABLE x (id int PRIMARY KEY, v text, pad text); CREATE TABLE y (id int PRIMARY KEY, v text);
             INSERT INTO x SELECT g, 'x', '' FROM generate_series(1, 100) g; INSERT INTO y SELECT g, 'y' FROM generate_series(1, 100) g`,
    yaml: 'syncs:\n  s:\n    sources: [a, b, c]\n    tables: { include: [public.x, public.y] }\n    copy_data: never',
  });
  await setUp(job);
  const run = swapRunner(t, job);
  await sql(job.urls.a!, `BEGIN; UPDATE x SET v = 'a' WHERE id <= 5; DELETE FROM y WHERE id <= 3; INSERT INTO y VALUES (101, 'a'); COMMIT`);
  const { sent } = await sentDuring(run);
  t.equal(batchReads(sent), 2, "a's batch read twice for its two tables: each table's changes (batchTables), and both tables' keys at once (batchKeys)");
  for (const db of ['b', 'c']) {
    t.same(
      await sql(
        job.urls[db]!,
        `SELECT (SELECT count(*) FILTER (WHERE v = 'a') FROM x)::int AS x, (SELECT string_agg(id::text, ',' ORDER BY id) FROM y WHERE id <= 3 OR id > 100) AS y`,
      ),
      [{ x: 5, y: '101' }],
      `${db} has both tables' changes`,
    );
  }
});
