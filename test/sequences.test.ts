// Sequences: a one-way sync keeps its targets' sequences at least at the
// source's value (never moving one back, never touching an excluded one); a
// multi-master sync leaves its sources alone, warns where per-node offsets
// are not in place, and gives pure targets the value furthest ahead.
import t from 'tap';
import { sql, testClusters, waitFor, withClient } from './harness/db.js';
import { makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { resolveSequences, syncSequences } from '../orchestrator/src/sync/sequences.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const seqState = async (url: string, seq: string): Promise<{ last_value: string; is_called: boolean }> =>
  (await sql<{ last_value: string; is_called: boolean }>(url, `SELECT last_value::text, is_called FROM ${seq}`))[0]!;

t.test('one-way: targets reach the source, are never moved back, excluded sequences stay', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: `
      CREATE TABLE items (id serial PRIMARY KEY, name text);
      CREATE TABLE other (id serial PRIMARY KEY);
      CREATE SEQUENCE counter;
      CREATE SEQUENCE "Odd seq";
      CREATE SEQUENCE loose;`,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public], exclude: [public.other, public.loose] }',
  });
  const { a, b, c } = job.urls as Record<'a' | 'b' | 'c', string>;
  // What the sync carries: items' serial (owned), counter and "Odd seq" (in public), not loose (excluded)
  // nor other's serial (its table is excluded).
  const carried = await withClient(a, (cl) => resolveSequences(cl, job.cfg.syncs.s!.tables, [{ schema: 'public', table: 'items' }]));
  t.same(carried, [
    { schema: 'public', name: 'Odd seq' },
    { schema: 'public', name: 'counter' },
    { schema: 'public', name: 'items_id_seq' },
  ]);

  await sql(c, `SELECT setval('items_id_seq', 500)`); // c is ahead of a: it must stay there
  await setUp(job);
  startDaemon(t, job);
  await sql(a, `SELECT setval('counter', 42), setval('"Odd seq"', 7, false), setval('loose', 99), setval('other_id_seq', 77)`);
  await sql(a, `INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 20) g`);
  await sql(a, `INSERT INTO other DEFAULT VALUES`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  // counter was set before the inserts: a run that carried it read items_id_seq after them.
  for (const n of [b, c]) {
    await waitFor(async () => (await seqState(n, 'counter')).last_value === '42', { what: 'counter to reach the targets' });
  }

  t.same(await seqState(b, 'items_id_seq'), { last_value: '20', is_called: true }, 'b caught up with a');
  t.same(await seqState(c, 'items_id_seq'), { last_value: '500', is_called: true }, 'c, ahead of a, was not moved back');
  t.same(await seqState(b, '"Odd seq"'), { last_value: '7', is_called: false }, 'an unused setval (is_called false) is carried as such');
  for (const n of [b, c]) {
    t.same(await seqState(n, 'loose'), { last_value: '1', is_called: false }, 'an excluded sequence is not touched');
    t.same(await seqState(n, 'other_id_seq'), { last_value: '1', is_called: false }, "an excluded table's sequence is not touched");
  }
  const copied = (await sql<{ max: number }>(b, 'SELECT max(id)::int AS max FROM items'))[0]!.max;
  t.equal(copied, 20);
  t.equal((await sql<{ id: number }>(b, `SELECT nextval('items_id_seq')::int AS id`))[0]!.id, 21, "b's next id is past every copied one");
});

t.test('multi-master: the offset scheme is checked, sources are left alone, a pure target gets the furthest value', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, t: c3! },
    schema: 'CREATE TABLE items (id serial PRIMARY KEY, name text);',
    yaml: 'syncs:\n  s:\n    sources: [a, b]\n    targets: [t]\n    tables: { include: [public.items] }',
  });
  const { a, b, t: target } = job.urls as Record<'a' | 'b' | 't', string>;
  const sync = job.cfg.syncs.s!;
  const conns = new Connections(job.cfg, 'capra-cli', silentLogger);
  t.teardown(() => conns.close());
  const insert = (url: string, n: number) => sql(url, `INSERT INTO items (name) SELECT 'x' FROM generate_series(1, ${n})`);

  // Both on increment 1: they hand out the same ids. A sequence only a has is named too.
  await sql(a, `CREATE SEQUENCE only_a OWNED BY items.name`);
  await insert(a, 5);
  await insert(b, 3);
  t.same(await syncSequences(conns, sync, silentLogger), {
    set: 1,
    warnings: [
      'sync s: sequence public.items_id_seq on a and b hands out the same values (increment 1 on both): use INCREMENT BY 2 with START 1 on a and START 2 on b',
      'sync s: sequence public.only_a is missing on b: create it there',
      'sync s: sequence public.only_a is missing on t: create it there',
    ],
  });
  t.same(await seqState(target, 'items_id_seq'), { last_value: '5', is_called: true }, 't has the furthest source value (a)');
  t.same(await seqState(b, 'items_id_seq'), { last_value: '3', is_called: true }, 'b, a source, is not set');
  await sql(a, 'DROP SEQUENCE only_a');

  // Offsets half in place: b got START 2 but was not restarted, so its next values are odd like a's.
  await sql(a, 'ALTER SEQUENCE items_id_seq INCREMENT BY 2 START 1 RESTART WITH 7');
  await sql(b, 'ALTER SEQUENCE items_id_seq INCREMENT BY 2 START 2');
  t.same(await syncSequences(conns, sync, silentLogger), {
    set: 1,
    warnings: [
      "sync s: sequence public.items_id_seq on b is at 3, in step with a's values (INCREMENT BY 2, START 1 on a): run ALTER SEQUENCE public.items_id_seq RESTART WITH 8 on b",
    ],
  });
  t.same(await seqState(target, 'items_id_seq'), { last_value: '7', is_called: false }, "t's next value is a's next, 7");

  // The advice followed: no warning; t follows whichever source is ahead.
  await sql(b, 'ALTER SEQUENCE items_id_seq RESTART WITH 8');
  await insert(a, 1); // 7
  await insert(b, 2); // 8, 10
  t.same(await syncSequences(conns, sync, silentLogger), { set: 1, warnings: [] });
  t.same(await seqState(target, 'items_id_seq'), { last_value: '10', is_called: true });
  t.same(await seqState(a, 'items_id_seq'), { last_value: '7', is_called: true }, 'a, a source, is not set');
  t.same(await syncSequences(conns, sync, silentLogger), { set: 0, warnings: [] }, 'nothing to move the second time');
});
