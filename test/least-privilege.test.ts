// Least privilege: the daemon connects as a role that is no superuser, owns
// nothing of the user's, and holds only the grants the README's "Running
// without superuser" section lists. An application role owns the tables and
// writes on all three nodes of a swap sync; everything converges, the
// conflict is settled, nothing is captured back, and uninstall (as that role)
// removes what install created.
import t from 'tap';
import { uninstall } from '../orchestrator/src/install/install.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { type Job, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { type Node, makeRoles, prepareMeta, prepareNode } from './harness/roles.js';

const { clusters } = testClusters();
const nodes = ['a', 'b', 'c'] as const;

const userSchema = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
  CREATE TABLE notes (k text PRIMARY KEY, body text);
`;

const row = async (url: string, id: number): Promise<unknown> => (await sql(url, 'SELECT name, qty FROM items WHERE id = $1', [id]))[0] ?? null;

for (const setParam of [false, true]) {
  t.test(`swap sync as a non-superuser ${setParam ? 'granted' : 'not granted'} SET on session_replication_role`, async (t) => {
    const major = clusters[0]!.major;
    if (setParam && major < 15) {
      t.comment(`skipped: GRANT SET ON PARAMETER needs PostgreSQL 15+ (have ${major})`);
      return;
    }
    const roles = await makeRoles(t, clusters.slice(0, 3), setParam);
    const n: Record<string, Node> = {};
    for (const [i, name] of nodes.entries()) n[name] = await prepareNode(t, clusters[i]!, roles, userSchema);
    const meta = await prepareMeta(t, clusters[0]!, roles.capra);
    const super_ = await sql(n.a!.capra, 'SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user');
    t.same(super_, [{ rolsuper: false, rolcreatedb: false, rolcreaterole: false }], 'capra is an unprivileged role');

    const job: Job = await makeJob(t, {
      nodes: { a: n.a!.capra, b: n.b!.capra, c: n.c!.capra },
      yaml: `metadata: ${meta}\nsyncs:\n  s:\n    sources: [a, b, c]\n    tables: { include: [public.items, public.notes] }\n    conflict: latest\n`,
    });
    await setUp(job);
    // capra may CREATE TRIGGER (TRIGGER privilege) but not ENABLE ALWAYS (ownership): they fire in origin role only.
    t.same(
      await sql(n.a!.admin, `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'items'::regclass ORDER BY 1`),
      [
        { tgname: 'capra_capture_row', tgenabled: 'O' },
        { tgname: 'capra_capture_trunc', tgenabled: 'O' },
      ],
      'the capture triggers are on, enabled the ordinary way',
    );
    const first = startDaemon(t, job);
    const [a, b, c] = [n.a!.app, n.b!.app, n.c!.app];

    // Round one: each node's own rows.
    await sql(a, `INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 20) g`);
    await sql(b, `INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(101, 120) g`);
    await sql(c, `INSERT INTO notes VALUES ('x', 'from c'), ('y', 'also c')`);
    await waitSame(job, 'items', [...nodes]);
    await waitSame(job, 'notes', [...nodes]);
    t.same(await sql(c, 'SELECT count(*)::int AS n FROM items'), [{ n: 40 }], "c has a's and b's rows");

    // Round two: each node changes rows that came from another.
    await sql(c, `UPDATE items SET qty = -qty WHERE id > 100`);
    await sql(b, `DELETE FROM items WHERE id <= 5`);
    await sql(a, `UPDATE items SET id = id + 1000 WHERE id = 10`); // key change
    await sql(a, `DELETE FROM notes WHERE k = 'y'`);
    await waitFor(async () => (await digest(job.urls.b!, 'items')).includes('(1010,a10,10)') && !(await digest(job.urls.c!, 'items')).includes('(1,a1,1)'), {
      what: 'the second round to arrive',
    });
    await waitSame(job, 'items', [...nodes]);
    await waitSame(job, 'notes', [...nodes]);
    for (const name of nodes) {
      const url = n[name]!.app;
      t.same(await sql(url, 'SELECT count(*)::int AS n, sum(qty)::int AS s FROM items'), [{ n: 35, s: 195 - 2210 }], `${name}: items after round two`);
      t.same(await sql(url, 'SELECT id FROM items WHERE id IN (10, 1010)'), [{ id: 1010 }], `${name}: the key changed`);
      t.same(await sql(url, 'SELECT k, body FROM notes'), [{ k: 'x', body: 'from c' }], `${name}: notes`);
    }

    // A conflict, made with the daemon stopped: a then b change item 11; latest: b wins.
    await first.stop();
    await sql(a, `UPDATE items SET name = 'from a', qty = 10 WHERE id = 11`);
    await new Promise((r) => setTimeout(r, 20));
    await sql(b, `UPDATE items SET name = 'from b', qty = 20 WHERE id = 11`);
    const second = startDaemon(t, job);
    await waitSame(job, 'items', [...nodes]);
    for (const name of nodes) t.same(await row(n[name]!.app, 11), { name: 'from b', qty: 20 }, `${name} has b's row (the later write)`);
    const log = await sql(job.cfg.metadata, 'SELECT table_name, key, strategy, decision, winner, versions FROM repl.conflict ORDER BY id');
    t.equal(log.length, 1, 'one conflict logged');
    t.match(log[0], { table_name: 'public.items', key: { id: 11 }, strategy: 'latest', decision: 'winner', winner: 'b' });
    t.same(
      (log[0]!.versions as { db: string; row: unknown }[]).map((v) => [v.db, v.row]),
      [
        ['a', { id: 11, name: 'from a', qty: 10 }],
        ['b', { id: 11, name: 'from b', qty: 20 }],
      ],
      'both versions logged',
    );

    for (const name of nodes) {
      t.same(
        await sql(job.urls[name]!, 'SELECT count(*)::int AS n FROM repl.delta WHERE origin IS NOT NULL'),
        [{ n: 0 }],
        `${name} captured none of the applied rows`,
      );
    }
    await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes.every((l) => l.replicaRole !== null), {
      what: 'every lane to record its replica role',
    });
    const lanes = (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes;
    t.same(
      lanes.map((l) => l.replicaRole),
      lanes.map(() => setParam),
      `status: replica role ${setParam ? 'in use' : 'refused'} on every lane`,
    );

    // Uninstall, still as capra, removes what install created and nothing of the app's.
    await second.stop();
    await uninstall(job.cfg, silentLogger);
    for (const name of nodes) {
      const left = await sql(
        n[name]!.admin,
        `SELECT
        (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'repl') AS schemas,
        (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'capra%') AS triggers,
        (SELECT count(*)::int FROM pg_proc WHERE proname ~ '^(capture|kick)_[0-9]+$') AS functions,
        (SELECT count(*)::int FROM items) AS items`,
      );
      t.same(left, [{ schemas: 0, triggers: 0, functions: 0, items: 35 }], `${name}: repl and the triggers are gone, the app's rows stay`);
    }
    t.same(await sql(meta, `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'repl'`), [{ n: 0 }], 'the metadata schema is gone');
  });
}
