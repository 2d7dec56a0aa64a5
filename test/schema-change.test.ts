// Schema changes while running: a column added on every node is picked up
// automatically (table definitions are read at every run, no reload needed);
// a mismatch between nodes stops only that table's sync, with a message that
// names the table and the columns, and it resumes by itself once fixed.
import t from 'tap';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { sql, testClusters, waitFor } from './harness/db.js';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const [c1, c2] = testClusters().clusters;

t.test('a column mismatch stops only its sync; fixing it resumes without a reload', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text); CREATE TABLE y (id int PRIMARY KEY, v text)',
    yaml: [
      'syncs:',
      '  s1: { sources: [a], targets: [b], tables: { include: [public.x] } }',
      '  s2: { sources: [a], targets: [b], tables: { include: [public.y] } }',
    ].join('\n'),
  });
  await setUp(job);
  startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x VALUES (1, 'one'); INSERT INTO y VALUES (1, 'one')`);
  await waitSame(job, 'x', ['a', 'b']);
  await waitSame(job, 'y', ['a', 'b']);

  // Added on every node (target first, as one would roll it out): picked up without a reload.
  await sql(job.urls.b!, 'ALTER TABLE x ADD COLUMN d int');
  await sql(job.urls.a!, 'ALTER TABLE x ADD COLUMN d int');
  await sql(job.urls.a!, `INSERT INTO x VALUES (2, 'two', 22)`);
  await waitSame(job, 'x', ['a', 'b']);
  t.equal(await digest(job.urls.b!, 'x'), '(1,one,)\n(2,two,22)', 'the new column replicates');

  // On the source only: s1 stops with a clear message, s2 keeps going.
  await sql(job.urls.a!, 'ALTER TABLE x ADD COLUMN c text');
  await sql(job.urls.a!, `INSERT INTO x VALUES (3, 'three', 33, 'see'); INSERT INTO y VALUES (2, 'two')`);
  await waitSame(job, 'y', ['a', 'b']);
  t.pass('the other sync kept replicating');
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs.find((s) => s.name === 's1')!.state === 'failing', {
    what: 'status to show s1 failing',
  });
  const st = await collectStatus(job.cfg, silentLogger);
  const s1 = st.syncs.find((s) => s.name === 's1')!;
  t.equal(s1.lanes[0]!.errorTable, 'public.x', 'status names the table');
  t.match(s1.lanes[0]!.error, /columns differ between nodes \(only on the source: c\)/, 'and what differs');
  t.equal(st.syncs.find((s) => s.name === 's2')!.state, 'ok', 's2 is ok');
  t.equal(await digest(job.urls.b!, 'x'), '(1,one,)\n(2,two,22)', 'nothing of s1 was half-applied');

  await sql(job.urls.b!, 'ALTER TABLE x ADD COLUMN c text');
  await waitSame(job, 'x', ['a', 'b']);
  t.match(await digest(job.urls.b!, 'x'), /\(3,three,33,see\)/, 's1 caught up by itself once the column exists on b');
  await waitFor(async () => (await collectStatus(job.cfg, silentLogger)).syncs.every((s) => s.state === 'ok'), { what: 'every sync ok again' });
});
