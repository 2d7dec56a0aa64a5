// A conflict handler written in PL/v8: an `sql:` handler like any other (the
// product has no PL/v8 path of its own: the metadata database calls the
// function whatever its language), run where the plv8 extension is available
// and skipped, saying why, where it is not.
import t from 'tap';
import { makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, urlFor } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;

// The metadata database, where SQL handlers run, lives on the first node's cluster (c1).
const available = (await sql(urlFor(c1!, 'postgres'), `SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'plv8'`))[0]!.n > 0;
const skip = available ? false : `plv8 is not installed on the test server (${c1!.host}:${c1!.port} lists no plv8 in pg_available_extensions)`;

t.test('conflict: a PL/v8 handler merges the versions', { skip }, async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE items (id int PRIMARY KEY, name text, qty int)',
    yaml: 'syncs:\n  s:\n    sources: [a, b]\n    targets: [c]\n    tables: { include: [public.items] }\n    conflict: { handler: "sql:public.merge_items_v8" }\n',
  });
  await setUp(job);
  await sql(
    job.cfg.metadata,
    `CREATE EXTENSION IF NOT EXISTS plv8;
     CREATE FUNCTION public.merge_items_v8(c jsonb) RETURNS jsonb LANGUAGE plv8 AS $$
       return { id: Number(c.key.id), name: 'merged', qty: c.versions.reduce((n, v) => n + Number(v.row.qty), 0) };
     $$`,
  );
  const first = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'base', 1)`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await first.stop();
  await sql(job.urls.a!, `UPDATE items SET name = 'from a', qty = 10 WHERE id = 1`);
  await sql(job.urls.b!, `UPDATE items SET name = 'from b', qty = 20 WHERE id = 1`);
  startDaemon(t, job);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  for (const db of ['a', 'b', 'c'])
    t.same(await sql(job.urls[db]!, 'SELECT name, qty FROM items WHERE id = 1'), [{ name: 'merged', qty: 30 }], `${db} has the merged row`);
  t.match(await sql(job.cfg.metadata, 'SELECT strategy, decision FROM repl.conflict'), [{ strategy: 'handler sql:public.merge_items_v8', decision: 'merged' }]);
});
