// Least privilege beyond plain syncs: as a role that is no superuser, owns no
// table of the app's and holds only the README's grants, a cascading one-way
// chain with copy_data, a sequence, an exception handler and clones works; a
// clone with drop_indexes and the statement capture mode, which need
// ownership, are refused up front naming the grant; a multi-master sync
// settles a conflict with an SQL handler; uninstall removes everything.
import t from 'tap';
import { uninstall } from '../orchestrator/src/install/install.js';
import { addTriggers } from '../orchestrator/src/triggers/sync-triggers.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { type Node, type Roles, makeRoles, prepareMeta, prepareNode } from './harness/roles.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const schema = `
  CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE, qty int);
  CREATE INDEX items_qty ON items (qty);
  -- An exception handler on the node: the app's function, run by capra (EXECUTE is PUBLIC's).
  CREATE FUNCTION public.free_name(f jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF f->>'constraint' <> 'items_name_key' THEN RETURN false; END IF;
      DELETE FROM items WHERE id >= 900;
      RETURN FOUND;
    END $$;
`;
const grants = (r: Roles) => `
  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON items TO ${r.capra};
  GRANT SELECT, UPDATE ON SEQUENCE items_id_seq TO ${r.capra};
`;

const count = async (url: string): Promise<number> => (await sql<{ n: number }>(url, 'SELECT count(*)::int AS n FROM items'))[0]!.n;

async function cloneEnds(job: Job, args: string): Promise<{ state: string; error: string | null }> {
  const meta = job.cfg.metadata;
  const id = (await sql<{ id: string }>(meta, `SELECT repl.clone(${args}) AS id`))[0]!.id;
  let row: { state: string; error: string | null } | undefined;
  await waitFor(
    async () => {
      row = (await sql<{ state: string; error: string | null }>(meta, 'SELECT state, error FROM repl.clone WHERE id = $1', [id]))[0];
      return row?.state === 'done' || row?.state === 'failed';
    },
    { what: `clone ${id} to end` },
  );
  return row!;
}

t.test('a cascading chain with copy_data, a sequence, a handler and clones, as a non-owner', async (t) => {
  const roles = await makeRoles(t, [c1!, c2!, c3!], false);
  const [a, b, c] = [
    await prepareNode(t, c1!, roles, schema, grants(roles)),
    await prepareNode(t, c2!, roles, schema, grants(roles)),
    await prepareNode(t, c3!, roles, schema, grants(roles)),
  ] as Node[];
  await sql(a!.app, `INSERT INTO items (name, qty) SELECT 'n' || g, g FROM generate_series(1, 10) g`);
  const job1 = await makeJob(t, {
    nodes: { a: a!.capra, b: b!.capra },
    yaml: `metadata: ${await prepareMeta(t, c1!, roles.capra)}\nsyncs:\n  down:\n    sources: [a]\n    targets: [b]\n    copy_data: empty\n    cascade: true\n    exception_handlers: ["sql:public.free_name"]\n`,
  });
  const job2 = await makeJob(t, {
    nodes: { b: b!.capra, c: c!.capra },
    yaml: `metadata: ${await prepareMeta(t, c2!, roles.capra)}\nsyncs:\n  on:\n    sources: [b]\n    targets: [c]\n    copy_data: empty\n`,
  });
  await setUp(job1);
  await setUp(job2);
  startDaemon(t, job1);
  startDaemon(t, job2);

  await waitSame(job1, 'items', ['a', 'b']);
  t.equal(await count(b!.app), 10, 'copy_data copied the existing rows to b');
  // b's own row holds a name a is about to use: applying it fails on b, the handler frees it.
  await sql(b!.app, `INSERT INTO items VALUES (900, 'taken', 0)`);
  await sql(a!.app, `INSERT INTO items (name, qty) SELECT 'm' || g, g FROM generate_series(1, 5) g`);
  await sql(a!.app, `INSERT INTO items (name, qty) VALUES ('taken', 1)`);
  await waitSame(job1, 'items', ['a', 'b']);
  t.same(
    await sql(b!.app, `SELECT id FROM items WHERE name = 'taken'`),
    await sql(a!.app, `SELECT id FROM items WHERE name = 'taken'`),
    "the handler freed the name on b, a's row arrived",
  );
  await waitSame(job2, 'items', ['b', 'c']);
  t.equal(await count(c!.app), 16, "cascade: a's rows reached c through b");
  const seq = async (url: string): Promise<number> => Number((await sql<{ v: string }>(url, 'SELECT last_value::text AS v FROM items_id_seq'))[0]!.v);
  await waitFor(async () => (await seq(b!.app)) >= (await seq(a!.app)), { what: "b's sequence to reach a's" });
  t.ok((await seq(b!.app)) >= 16, "the sequence on b was moved up to a's");

  // A clone that would drop indexes needs ownership: refused before any table is touched.
  await sql(b!.app, `UPDATE items SET qty = -1 WHERE id = 1`);
  const refused = await cloneEnds(job1, `sync => 'down', drop_indexes => true`);
  t.equal(refused.state, 'failed', 'the drop_indexes clone failed');
  t.match(
    refused.error,
    new RegExp(`drop_indexes on public\\.items on b needs ownership of the table to drop its indexes: GRANT "?${roles.app}"? TO "?${roles.capra}"?`),
    'naming the grant',
  );
  t.same(await sql(b!.app, 'SELECT qty FROM items WHERE id = 1'), [{ qty: -1 }], "b's table was left as it was");
  t.same(await cloneEnds(job1, `sync => 'down'`), { state: 'done', error: null }, 'a clone without drop_indexes runs');
  t.equal(await digest(b!.app, 'items'), await digest(a!.app, 'items'), 'the clone made b equal to a');

  // The statement capture mode could not be taken off again by a non-owner: refused.
  const conns = new Connections(job1.cfg, 'capra-cli', silentLogger);
  await t.rejects(
    addTriggers(job1.cfg, job1.cfg.syncs.down!, conns, silentLogger, { mode: 'statement' }),
    new RegExp(`table public\\.items: needs ownership: GRANT "?${roles.app}"? TO "?${roles.capra}"? for the statement capture mode`),
    'statement mode is refused, naming the grant',
  );
  await conns.close();

  for (const job of [job2, job1]) await uninstall(job.cfg, silentLogger);
  for (const n of [a, b, c]) {
    t.same(
      await sql(
        n!.admin,
        `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'repl') AS schemas, (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'capra%') AS triggers`,
      ),
      [{ schemas: 0, triggers: 0 }],
      'uninstall removed repl and the triggers',
    );
  }
});

t.test('multi-master with an SQL conflict handler, as a non-owner', async (t) => {
  const roles = await makeRoles(t, [c1!, c2!], false);
  const [a, b] = [await prepareNode(t, c1!, roles, schema, grants(roles)), await prepareNode(t, c2!, roles, schema, grants(roles))] as Node[];
  const meta = await prepareMeta(t, c1!, roles.capra);
  // The handler lives in the metadata database; the admin creates it, capra may run it.
  const metaAdmin = meta.replace(`${roles.capra}@`, `${c1!.user}@`);
  await sql(metaAdmin, `CREATE FUNCTION public.prefer_b(c jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb('b'::text) $$`);
  const job = await makeJob(t, {
    nodes: { a: a!.capra, b: b!.capra },
    yaml: `metadata: ${meta}\nsyncs:\n  mm:\n    sources: [a, b]\n    conflict: { handler: "sql:public.prefer_b" }\n`,
  });
  await setUp(job);
  const first = startDaemon(t, job);
  await sql(a!.app, `INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2)`);
  await waitSame(job, 'items', ['a', 'b']);
  await first.stop();
  await sql(b!.app, `UPDATE items SET qty = 20 WHERE id = 1`);
  await sql(a!.app, `UPDATE items SET qty = 10 WHERE id = 1`); // the later write, but the handler picks b
  startDaemon(t, job);
  await waitSame(job, 'items', ['a', 'b']);
  t.same(await sql(a!.app, 'SELECT qty FROM items WHERE id = 1'), [{ qty: 20 }], "the handler's pick won on a");
  t.match(await sql(meta, 'SELECT strategy, winner FROM repl.conflict'), [{ strategy: 'handler sql:public.prefer_b', winner: 'b' }], 'the conflict was logged');
});
