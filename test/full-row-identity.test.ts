// A table without a key in a one-way sync, replicated with its whole row as
// identity (tables.options identity: full): duplicates included, an update
// or delete of one of several equal rows changes exactly one on the target,
// under concurrent writes and across a kill -9 of the daemon mid-stream.
import t from 'tap';
import { sql, testClusters, waitFor } from './harness/db.js';
import { type CliChild, type Job, digest, makeJob, setUp, spawnCli, waitSame } from './harness/capra.js';
import type { TeardownTest } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const schema = `
  CREATE TABLE log (who text, n int, at date, note text);
  CREATE TABLE j (doc json);
`;
const yaml = (opts: string): string => `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.log]\n      options:\n${opts}`;

/** Deletes or updates exactly one of the rows equal to `where` (ctid picks one). */
const oneOf = (what: string, where: string): string => `${what} WHERE ctid = (SELECT ctid FROM log WHERE ${where} LIMIT 1)`;

async function count(url: string, where: string): Promise<number> {
  return (await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM log WHERE ${where}`))[0]!.n;
}

function daemon(t: TeardownTest, job: Job): CliChild {
  return spawnCli(t, job, ['start', '--foreground']);
}

t.test('whole-row identity: duplicates, NULLs, one of several equal rows, concurrent writers, kill -9', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: yaml('        public.log: { identity: full }') });
  const a = job.urls.a!;
  const b = job.urls.b!;
  await sql(a, `INSERT INTO log VALUES ('x', 1, '2024-01-01', NULL), ('x', 1, '2024-01-01', NULL), ('x', 1, '2024-01-01', NULL), ('y', NULL, NULL, '')`);
  await setUp(job);
  t.same(await sql(a, `SELECT key_cols FROM repl.consumer_table`), [{ key_cols: ['who', 'n', 'at', 'note'] }], 'the whole row is the identity');
  let d = daemon(t, job);
  await waitSame(job, 'log', ['a', 'b']);
  t.equal(await count(b, `who = 'x'`), 3, 'three equal rows copied');

  await sql(a, oneOf(`UPDATE log SET note = 'one'`, `who = 'x'`));
  await sql(a, oneOf('DELETE FROM log', `who = 'x' AND note IS NULL`));
  await sql(a, `UPDATE log SET n = 2 WHERE who = 'y'`); // a row with NULLs and an empty string
  await waitSame(job, 'log', ['a', 'b']);
  t.equal(await count(b, `who = 'x' AND note IS NULL`), 1, 'the delete removed exactly one of the equal rows');
  t.equal(await count(b, `who = 'x' AND note = 'one'`), 1, 'the update changed exactly one of them');
  t.equal(await count(b, `who = 'y' AND n = 2 AND note = ''`), 1, 'NULL and the empty string told apart');

  // Concurrent writers make duplicates and change them one at a time while the daemon is killed and restarted.
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop && i < 400; i++) {
      const who = `w${w}-${i % 7}`;
      await sql(a, `INSERT INTO log VALUES ($1, $2, NULL, NULL), ($1, $2, NULL, NULL)`, [who, i % 3]);
      if (i % 2 === 0) await sql(a, oneOf(`UPDATE log SET note = 'u'`, `who = '${who}' AND note IS NULL`));
      if (i % 3 === 0) await sql(a, oneOf('DELETE FROM log', `who = '${who}'`));
    }
  };
  const writers = Promise.all([0, 1, 2].map(writer));
  for (let k = 0; k < 3; k++) {
    await waitFor(async () => (await count(b, `who LIKE 'w%'`)) > k * 50, { what: 'the lane to apply some writes' });
    d.child.kill('SIGKILL');
    await d.exit;
    d = daemon(t, job);
  }
  stop = true;
  await writers;
  await waitSame(job, 'log', ['a', 'b'], { timeoutMs: 120_000 });
  t.equal(await digest(b, 'log'), await digest(a, 'log'), 'the same rows, duplicates counted, after three kills');
  t.ok(
    (await sql<{ n: number }>(a, `SELECT count(*)::int AS n FROM (SELECT 1 FROM log GROUP BY log.* HAVING count(*) > 1) x`))[0]!.n > 0,
    'control: duplicates exist',
  );
  d.child.kill('SIGKILL');
  await d.exit;
});

t.test('whole-row identity refuses what it cannot compare, and multi-master still refuses a keyless table', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables:\n      include: [public.j]\n      options:\n        public.j: { identity: full }',
  });
  await t.rejects(
    setUp(job),
    /^table public\.j on a: tables\.options identity full: could not identify an equality operator for type json/,
    'json has no equality',
  );
  const plain = await makeJob(t, {
    nodes: { a: job.urls.a!, b: job.urls.b! },
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.log] }',
  });
  await t.rejects(setUp(plain), /^table public\.log on a has no primary key: .*identity: full .* or fullcopy: <cron>/, 'one-way: both ways are named');
  const mm = await makeJob(t, { nodes: { a: job.urls.a!, b: job.urls.b! }, yaml: 'syncs:\n  s:\n    sources: [a, b]\n    tables: { include: [public.log] }' });
  await t.rejects(
    setUp(mm),
    /^table public\.log on a has no primary key: .*a multi-master sync needs a key; identity: full or fullcopy/,
    'multi-master: refused, naming both',
  );
});
