// A multi-master receiver left behind by a user's concurrent write: the
// run's DELETE there fails (serialization failure) while the source is
// already sending the rows (the source's row fetch and the receiver's DELETE
// run at once, see deleteThenCopy in sync/apply.ts). The source's rows are
// read to their end, so its connection serves the rest of the run: the other
// receiver gets the batch in that same run, no run fails, and the next run
// brings the one left behind up to date, its user's write settled as a
// conflict (b comes first in the sync's priority list).
import t from 'tap';
import pg from 'pg';
import { sql, testClusters, waitFor } from './harness/db.js';
import { makeJob, setUp, waitSame } from './harness/capra.js';
import { daemonFor, recordingLogger } from './harness/hung.js';

const [c1, c2, c3] = testClusters().clusters;

t.test("a receiver's DELETE fails while the source sends its rows: the run goes on to the other receiver", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text)',
    yaml: 'syncs:\n  s:\n    sources: [a, b, c]\n    conflict: [b, a, c]',
  });
  await setUp(job);
  const { logger, lines } = recordingLogger();
  daemonFor(t, job, logger);
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'first' FROM generate_series(1, 3000) g`);
  await waitSame(job, 'x', ['a', 'b', 'c']);

  // A user's transaction on b holds key 1; a changes every key, 1 among them, to rows of 8 kB: 24 MB in all,
  // more than deleteThenCopy keeps in memory while the DELETE runs (so the source is held back).
  const user = new pg.Client({ connectionString: job.urls.b! });
  await user.connect();
  t.teardown(() => user.end());
  // The contents can match while a run still applies a's rows to b again (copy_data's clone, then the lane's
  // batch of the same rows, idempotently): the user's UPDATE then waits for that run and finds key 1 deleted
  // and inserted anew, and updates nothing. Take the lock again until it holds key 1.
  await waitFor(
    async () => {
      await user.query('BEGIN');
      if ((await user.query(`UPDATE x SET v = 'user on b' WHERE id = 1`)).rowCount === 1) return true;
      await user.query('ROLLBACK');
      return false;
    },
    { what: "the user's UPDATE on b to hold key 1" },
  );
  await sql(job.urls.a!, `UPDATE x SET v = 'from a ' || repeat('.', 8000)`);
  await waitFor(
    async () =>
      (
        await sql(
          job.urls.b!,
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'capra-sync'
              AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM %'`,
        )
      ).length > 0,
    { what: "the run's DELETE on b to wait for the user's row lock", intervalMs: 10 },
  );
  // Committed after the run's snapshot: b's DELETE fails, and b is left behind for this run.
  await user.query('COMMIT');

  await waitFor(async () => (await sql(job.urls.c!, `SELECT count(*)::int AS n FROM x WHERE v LIKE 'from a%'`))[0]!.n >= 2999, {
    what: "a's change to reach c",
  });
  await waitSame(job, 'x', ['a', 'b', 'c']);
  t.same(
    await sql(job.urls.c!, `SELECT left(v, 6) AS v, count(*)::int AS n FROM x GROUP BY 1 ORDER BY 1`),
    [
      { v: 'from a', n: 2999 },
      { v: 'user o', n: 1 },
    ],
    "every node has a's change, and b's write to key 1 (b comes first)",
  );
  t.same(
    lines.filter((l) => l.startsWith('run failed')),
    [],
    "no run failed: a's connection served the run on after b's DELETE failed",
  );
  t.ok(
    lines.some((l) => l === 'conflict settled'),
    "b's write met a's change as a conflict in a later run",
  );
});
