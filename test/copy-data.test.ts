// copy_data: a sync's tables are copied to each target before its lane first
// applies them (first start, tables added later), once: always, only where the
// target's table is empty, or never.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { addTriggersForSyncs, dropTriggers } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;

const count = async (url: string, table: string): Promise<number> => (await sql(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;
const schema = 'CREATE TABLE x (id int PRIMARY KEY, v text); CREATE TABLE y (id int PRIMARY KEY, v text)';

async function seeded(job: Job): Promise<string[]> {
  const rows = await sql<{ k: string }>(job.cfg.metadata, `SELECT table_name || '@' || target AS k FROM repl.seeded ORDER BY 1`);
  return rows.map((r) => r.k);
}

async function copyClones(job: Job): Promise<{ state: string; only_empty: boolean }[]> {
  return sql(job.cfg.metadata, `SELECT state, only_empty FROM repl.clone WHERE origin = 'copy_data' ORDER BY id`);
}

function syncYaml(copyData: string, include = '[public.x, public.y]'): string {
  return `syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: ${include} }\n    copy_data: ${copyData}`;
}

t.test('copy_data: empty fills the targets whose table is empty and leaves the others', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2!, c: c3! }, schema, yaml: syncYaml('empty') });
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a' FROM generate_series(1, 1000) g; INSERT INTO y SELECT g, 'a' FROM generate_series(1, 500) g`);
  await sql(job.urls.b!, `INSERT INTO y VALUES (1, 'b own'), (2, 'b own'), (9999, 'b own')`);
  await setUp(job);
  startDaemon(t, job);
  await waitFor(async () => (await seeded(job)).length === 4, { what: 'the initial copies' });
  t.same(await seeded(job), ['x@b', 'x@c', 'y@b', 'y@c']);
  for (const n of ['b', 'c']) t.equal(await digest(job.urls[n]!, 'x'), await digest(job.urls.a!, 'x'), `x copied to ${n}`);
  t.equal(await digest(job.urls.c!, 'y'), await digest(job.urls.a!, 'y'), 'y copied to c (empty)');
  t.same(
    await sql(job.urls.b!, 'SELECT id, v FROM y ORDER BY id'),
    [
      { id: 1, v: 'b own' },
      { id: 2, v: 'b own' },
      { id: 9999, v: 'b own' },
    ],
    'y on b had rows: left alone',
  );
  t.same(
    await copyClones(job),
    [
      { state: 'done', only_empty: true },
      { state: 'done', only_empty: true },
    ],
    'one copy_data clone per lane, in the clone history',
  );
  // Replication goes on from there: a change to y reaches b as well.
  await sql(job.urls.a!, `UPDATE y SET v = 'changed' WHERE id = 2; INSERT INTO x VALUES (1001, 'new')`);
  await waitSame(job, 'x', ['a', 'b', 'c']);
  await waitFor(async () => (await sql(job.urls.b!, 'SELECT v FROM y WHERE id = 2'))[0]!.v === 'changed', { what: 'the change to y on b' });
  t.equal(await count(job.urls.b!, 'y'), 3);
});

t.test('copy_data: always replaces what the targets had; never copies nothing', async (t) => {
  for (const mode of ['always', 'never'] as const) {
    const job = await makeJob(t, { nodes: { a: c1!, b: c2!, c: c3! }, schema, yaml: syncYaml(mode) });
    await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a' FROM generate_series(1, 300) g`);
    await sql(job.urls.b!, `INSERT INTO x VALUES (1, 'stale'), (7777, 'stale')`);
    await setUp(job);
    startDaemon(t, job);
    await sql(job.urls.a!, `UPDATE x SET v = 'changed' WHERE id = 5`);
    if (mode === 'always') {
      await waitSame(job, 'x', ['a', 'b', 'c']);
      t.pass("always: b and c are identical to a, b's stale rows gone");
      await waitFor(async () => (await seeded(job)).length === 4, { what: "both lanes' initial copies" });
      t.same(await seeded(job), ['x@b', 'x@c', 'y@b', 'y@c']);
    } else {
      await waitFor(async () => (await sql(job.urls.c!, 'SELECT v FROM x WHERE id = 5')).length === 1, { what: 'the change on c' });
      t.equal(await count(job.urls.c!, 'x'), 1, 'never: c got the changed row only');
      await waitFor(async () => (await sql(job.urls.b!, 'SELECT 1 FROM x WHERE id = 5')).length === 1, { what: 'the change on b' });
      t.same(await sql(job.urls.b!, 'SELECT id, v FROM x ORDER BY id'), [
        { id: 1, v: 'stale' },
        { id: 5, v: 'changed' },
        { id: 7777, v: 'stale' },
      ]);
      t.same(await copyClones(job), [], 'never: no clone');
    }
  }
});

t.test('a table added later is copied before its first change is applied, once; a restart copies nothing again', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x] }\n    copy_data: always',
  });
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'a' FROM generate_series(1, 200) g; INSERT INTO y SELECT g, 'a' FROM generate_series(1, 100) g`);
  await setUp(job);
  const daemon = startDaemon(t, job);
  await waitSame(job, 'x', ['a', 'b']);
  t.equal(await count(job.urls.b!, 'y'), 0, 'y is not in the sync yet');

  const text = (await readFile(job.configPath, 'utf8')).replace('include: [public.x]', 'include: [public.x, public.y]');
  const next = parseConfigText(text, job.configPath);
  await addTriggersForSyncs(next, silentLogger);
  // No reload: the lane sees the new table in its next run and copies it before applying its changes.
  await sql(job.urls.a!, `UPDATE y SET v = 'changed' WHERE id = 1`);
  await waitSame(job, 'y', ['a', 'b']);
  t.equal(await count(job.urls.b!, 'y'), 100, 'the added table was copied');
  t.same(await seeded(job), ['x@b', 'y@b']);

  // Drift on the target, then a new daemon: copy_data does not run again.
  await sql(job.urls.b!, 'DELETE FROM x WHERE id <= 10');
  await daemon.stop();
  startDaemon(t, { ...job, cfg: next });
  await sql(job.urls.a!, `UPDATE x SET v = 'after restart' WHERE id = 100`);
  await waitFor(async () => (await sql(job.urls.b!, 'SELECT v FROM x WHERE id = 100'))[0]!.v === 'after restart', { what: 'the change after the restart' });
  t.equal(await count(job.urls.b!, 'x'), 190, 'no second copy after the restart');
  t.equal((await copyClones(job)).length, 2, 'two initial copies in all: x, then y');

  // Taking the sync's triggers off forgets its initial copies: added again, it copies again.
  const conns = new Connections(next, 'capra-cli', silentLogger);
  try {
    await dropTriggers(next, next.syncs.s!, conns, silentLogger);
  } finally {
    await conns.close();
  }
  t.same(await seeded(job), [], 'drop-triggers forgets the initial copies');
});
