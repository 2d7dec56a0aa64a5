// One-way sync end to end: every kind of change reaches every target, the
// applier's writes are not captured again, and the target's own triggers do
// not fire for applied rows.
import t from 'tap';
import { testClusters, sql } from './harness/db.js';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
  CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
  CREATE TABLE audit (id serial PRIMARY KEY, what text);
  CREATE FUNCTION audit_items() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO audit (what) VALUES (TG_OP); RETURN NULL; END $$;
  CREATE TRIGGER items_audit AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION audit_items();
`;

t.test('every change reaches both targets', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public.items, public.pairs] }',
  });
  await setUp(job);
  startDaemon(t, job);
  const a = job.urls.a!;
  await sql(a, `INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 100) g`);
  await sql(a, `INSERT INTO pairs VALUES (1, 'x', 'one'), (1, 'y', 'two'), (2, 'x', 'three')`);
  await sql(a, `UPDATE items SET qty = qty * 10 WHERE id % 3 = 0`);
  await sql(a, `DELETE FROM items WHERE id > 90`);
  await sql(a, `UPDATE items SET id = id + 1000 WHERE id < 5`); // key change: old key must vanish downstream
  await sql(a, `UPDATE pairs SET b = 'z' WHERE a = 1 AND b = 'y'`); // composite key change
  await sql(a, `DELETE FROM pairs WHERE a = 2`);
  for (const table of ['items', 'pairs']) await waitSame(job, table, ['a', 'b', 'c']);
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM items'))[0]!.n, 90, 'b has 90 items');
  t.same(
    await sql(job.urls.c!, 'SELECT id FROM items WHERE id < 5 OR id > 1000 ORDER BY id'),
    [1001, 1002, 1003, 1004].map((id) => ({ id })),
  );
  t.same(await sql(job.urls.c!, 'SELECT a, b, v FROM pairs ORDER BY a, b'), [
    { a: 1, b: 'x', v: 'one' },
    { a: 1, b: 'z', v: 'two' },
  ]);

  // TRUNCATE, then new rows in the same and a later transaction.
  await sql(a, `BEGIN; TRUNCATE items; INSERT INTO items VALUES (7, 'after truncate', 1); COMMIT`);
  await sql(a, `INSERT INTO items VALUES (8, 'later', 2)`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  t.equal(await digest(job.urls.b!, 'items'), '(7,"after truncate",1)\n(8,later,2)');

  // Applied rows are not captured again on the targets, and their user triggers stayed quiet.
  for (const n of ['b', 'c']) {
    t.equal((await sql(job.urls[n]!, 'SELECT count(*)::int AS n FROM repl.delta'))[0]!.n, 0, `${n} captured nothing`);
    t.equal((await sql(job.urls[n]!, 'SELECT count(*)::int AS n FROM audit'))[0]!.n, 0, `${n}'s own trigger did not fire`);
  }
  t.ok((await sql(a, 'SELECT count(*)::int AS n FROM audit'))[0]!.n > 0, 'the source trigger did fire (control)');
});

t.test('a table outside the selection is not replicated', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public], exclude: [public.audit] }',
  });
  await setUp(job);
  startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'x', 1)`); // its trigger writes audit on a
  await waitSame(job, 'items', ['a', 'b']);
  t.equal((await sql(job.urls.a!, 'SELECT count(*)::int AS n FROM audit'))[0]!.n, 1);
  t.equal((await sql(job.urls.b!, 'SELECT count(*)::int AS n FROM audit'))[0]!.n, 0, 'audit stayed local');
});
