// A partitioned table in a sync: rows written through the parent or straight
// into a partition, moved between partitions or truncated, replicate; the
// initial copy and clones fill the target through its parent.
import t from 'tap';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2] = testClusters().clusters;
const schema = `CREATE TABLE m (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
  CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
  CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');`;

const rows = (url: string) => sql(url, 'SELECT id, region, v FROM m ORDER BY id, region');

t.test('a partitioned table replicates, initial copy included', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.m] }\n    copy_data: always',
  });
  await sql(job.urls.a!, `INSERT INTO m VALUES (1, 'eu', 'before'), (2, 'us', 'before')`);
  await sql(job.urls.b!, `INSERT INTO m VALUES (9, 'us', 'stale')`);
  await setUp(job);
  startDaemon(t, job);
  await waitSame(job, 'm', ['a', 'b']);
  t.same(
    await rows(job.urls.b!),
    [
      { id: 1, region: 'eu', v: 'before' },
      { id: 2, region: 'us', v: 'before' },
    ],
    "the initial copy replaced b's rows in every partition",
  );

  await sql(job.urls.a!, `INSERT INTO m VALUES (3, 'eu', 'after'); UPDATE m SET v = 'changed' WHERE id = 2; DELETE FROM m WHERE id = 1`);
  await sql(job.urls.a!, `UPDATE m SET region = 'us' WHERE id = 3`); // moves the row to the other partition
  await sql(job.urls.a!, `INSERT INTO m_eu VALUES (4, 'eu', 'straight into the partition')`);
  await waitSame(job, 'm', ['a', 'b']);
  t.same(
    await rows(job.urls.b!),
    [
      { id: 2, region: 'us', v: 'changed' },
      { id: 3, region: 'us', v: 'after' },
      { id: 4, region: 'eu', v: 'straight into the partition' },
    ],
    'inserts, updates, deletes, a move between partitions and a write into a partition arrived',
  );
  t.same(await sql(job.urls.b!, `SELECT count(*)::int AS n FROM m_eu`), [{ n: 1 }], 'each row is in its partition on b');

  await sql(job.urls.a!, `TRUNCATE m; INSERT INTO m VALUES (5, 'eu', 'after the truncate')`);
  await waitSame(job, 'm', ['a', 'b']);
  t.equal(await digest(job.urls.b!, 'm'), await digest(job.urls.a!, 'm'), 'a TRUNCATE of the parent arrived');

  const id = Number((await sql(job.cfg.metadata, `SELECT repl.clone(sync => 's', only_empty => true) AS id`))[0]!.id);
  const ended = async () => sql(job.cfg.metadata, `SELECT state, note FROM repl.clone_table WHERE clone_id = $1 AND state NOT IN ('queued', 'running')`, [id]);
  await waitFor(async () => (await ended()).length === 1, { what: 'the only_empty clone to end' });
  t.same(await ended(), [{ state: 'skipped', note: 'not empty' }], 'only_empty sees the rows in the partitions');
});
