// TRUNCATE in a multi-master sync: the table on every node ends as the
// truncating source's contents; when several sources truncated it in the
// same run, the first of them as the sync lists its sources wins (README,
// "multi-master syncs"), whichever truncated last.
import t, { type Test } from 'tap';
import { type Job, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;

const rows = async (job: Job, db: string): Promise<unknown[]> => sql(job.urls[db]!, 'SELECT id, v FROM x ORDER BY id');

/** A job a, b (sources) -> c with rows 1..20 everywhere, its daemon stopped so the next writes all fall in one run. */
async function settled(t: Test): Promise<Job> {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: 'syncs:\n  s:\n    sources: [a, b]\n    targets: [c]\n    tables: { include: [public.x] }\n    copy_data: never\n',
  });
  await setUp(job);
  const first = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'start' FROM generate_series(1, 20) g`);
  await waitSame(job, 'x', ['a', 'b', 'c']);
  await first.stop();
  return job;
}

t.test('multi-master TRUNCATE: the first listed source that truncated wins, on every node', async (t) => {
  const job = await settled(t);
  // a truncates first, b after it: b is the latest, a is listed first.
  await sql(job.urls.a!, `TRUNCATE x; INSERT INTO x VALUES (100, 'a after truncate'), (101, 'a after truncate')`);
  await sql(job.urls.b!, `TRUNCATE x; INSERT INTO x VALUES (200, 'b after truncate')`);
  const aRows = await rows(job, 'a');
  startDaemon(t, job);
  await waitSame(job, 'x', ['a', 'b', 'c']);
  t.same(await rows(job, 'a'), aRows, "a's contents are unchanged");
  for (const db of ['b', 'c']) t.equal(await digest(job.urls[db]!, 'x'), await digest(job.urls.a!, 'x'), `${db} ends equal to a`);
});

t.test("multi-master TRUNCATE: one source truncated; its contents win over another source's changes in the same run", async (t) => {
  const job = await settled(t);
  await sql(job.urls.a!, `INSERT INTO x VALUES (300, 'a insert'); UPDATE x SET v = 'a update' WHERE id = 1`);
  await sql(job.urls.b!, `TRUNCATE x; INSERT INTO x VALUES (400, 'b after truncate')`);
  startDaemon(t, job);
  await waitSame(job, 'x', ['a', 'b', 'c']);
  t.same(await rows(job, 'b'), [{ id: 400, v: 'b after truncate' }], "b's contents are unchanged");
  for (const db of ['a', 'c']) t.equal(await digest(job.urls[db]!, 'x'), await digest(job.urls.b!, 'x'), `${db} ends equal to b`);
});
