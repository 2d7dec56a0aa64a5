// Multi-master (swap) syncs: every source's changes reach every other node,
// nothing bounces back, and conflicts are settled by the configured rule
// with exactly the expected winner, logged with every version.
import t from 'tap';
import { testClusters, sql } from './harness/db.js';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import type { Job } from './harness/capra.js';
import { waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
  CREATE TABLE notes (k text PRIMARY KEY, body text);
`;

function yaml(conflict: string, extra = ''): string {
  return `syncs:\n  s:\n    sources: [a, b]\n    targets: [c]\n    tables: { include: [public.items, public.notes] }\n    conflict: ${conflict}\n${extra}`;
}

async function conflicts(job: Job): Promise<{ table_name: string; key: unknown; strategy: string; decision: string; winner: string | null; versions: { db: string; row: unknown }[]; detail: unknown }[]> {
  return sql(job.cfg.metadata, 'SELECT table_name, key, strategy, decision, winner, versions, detail FROM repl.conflict ORDER BY id');
}

t.test('writes on both sources reach every node; nothing comes back', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2!, c: c3! }, schema, yaml: yaml('latest') });
  await setUp(job);
  startDaemon(t, job);
  const { a, b, c } = job.urls as Record<string, string>;
  await sql(a!, `INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 50) g`);
  await sql(b!, `INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(101, 150) g`);
  await sql(b!, `INSERT INTO notes VALUES ('x', 'from b')`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await waitSame(job, 'notes', ['a', 'b', 'c']);
  t.equal((await sql(c!, 'SELECT count(*)::int AS n FROM items'))[0]!.n, 100, 'c has both sources\' rows');
  // Changes made by the applier are not captured again anywhere.
  await sql(a!, `UPDATE items SET qty = -qty WHERE id > 100`); // a changes rows that came from b
  await sql(b!, `DELETE FROM items WHERE id <= 10`); // b deletes rows that came from a
  await sql(a!, `UPDATE items SET id = id + 1000 WHERE id = 20`); // key change
  await waitFor(async () => (await digest(b!, 'items')).includes('(1020,a20,20)') && !(await digest(a!, 'items')).includes('(1,a1,1)'), {
    what: 'the second round to arrive',
  });
  await waitSame(job, 'items', ['a', 'b', 'c']);
  t.same(await sql(c!, 'SELECT min(qty)::int AS q FROM items WHERE id > 100 AND id < 1000'), [{ q: -150 }], "a's update of b's rows reached c");
  t.same(await sql(b!, 'SELECT count(*)::int AS n FROM items'), [{ n: 90 }]);
  for (const n of ['a', 'b']) {
    const own = await sql(job.urls[n]!, `SELECT count(*)::int AS n FROM repl.delta WHERE origin IS NOT NULL`);
    t.equal(own[0]!.n, 0, `${n} captured none of the applied rows`);
  }
  t.same(await conflicts(job), [], 'no conflicts were logged');
});
