// A target whose role may not set session_replication_role: rows still
// replicate, its own triggers fire (nothing can stop them), and status says
// so. With GRANT SET ON PARAMETER (PostgreSQL 15+) the applier uses replica.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { formatStatus } from '../orchestrator/src/cli/print-status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { freshDb, sql, testClusters, waitFor } from './harness/db.js';
import { makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;
const table = `CREATE TABLE items (id int PRIMARY KEY, v text);
  CREATE TABLE audit (n serial PRIMARY KEY);
  CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit DEFAULT VALUES; RETURN NULL; END $$;
  CREATE TRIGGER note AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION note();`;

for (const granted of [false, true]) {
  const skip = granted && c2!.major < 15 ? `GRANT SET ON PARAMETER needs PostgreSQL 15+ (have ${c2!.major})` : false;
  t.test(granted ? 'granted SET on session_replication_role' : 'a role that may not set session_replication_role', { skip }, async (t) => {
    const role = `capra_app_${randomBytes(4).toString('hex')}`;
    const admin = `postgres://postgres@${c2!.host}:${c2!.port}/postgres`;
    await sql(admin, `CREATE ROLE ${role} LOGIN`);
    // Registered before the database, so it runs after the database is dropped.
    t.teardown(async () => {
      if (granted) await sql(admin, `REVOKE SET ON PARAMETER session_replication_role FROM ${role}`);
      await sql(admin, `DROP ROLE IF EXISTS ${role}`);
    });
    const bAsAdmin = await freshDb(t, c2!, 'b');
    const dbName = new URL(bAsAdmin).pathname.slice(1);
    await sql(admin, `ALTER DATABASE ${dbName} OWNER TO ${role}`);
    if (granted) await sql(admin, `GRANT SET ON PARAMETER session_replication_role TO ${role}`);
    const bAsRole = `postgres://${role}@${c2!.host}:${c2!.port}/${dbName}`;
    await sql(bAsRole, table);
    const job = await makeJob(t, {
      nodes: { a: c1!, b: bAsRole },
      yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items] }',
    });
    await sql(job.urls.a!, table);
    await setUp(job);
    startDaemon(t, job);
    // After the initial copy (copy_data: empty), so that only the lane writes
    // these rows: a copy taken after them would fire the trigger too.
    await waitFor(async () => (await sql(job.cfg.metadata, 'SELECT 1 FROM repl.seeded')).length === 1, { what: 'the initial copy' });
    await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'x'), (2, 'y')`);
    await waitSame(job, 'items', ['a', 'b']);
    const fired = (await sql(bAsRole, 'SELECT count(*)::int AS n FROM audit'))[0]!.n;
    t.equal(fired, granted ? 0 : 2, granted ? "b's trigger stayed quiet" : "b's trigger fired for the applied rows");
    await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs[0]!.lanes[0]!.replicaRole !== null, { what: 'the lane state to be recorded' });
    const st = await collectStatus(job.cfg, silentLogger);
    t.equal(st.syncs[0]!.lanes[0]!.replicaRole, granted, 'status knows whether replica role is in use');
    t.equal(/note: b refuses session_replication_role/.test(formatStatus(st)), !granted, 'the human status says so only when refused');
  });
}
