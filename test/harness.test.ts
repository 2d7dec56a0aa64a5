// Proves the harness itself: clusters are up, fresh databases are isolated,
// and the "other major version" cluster really is another version.
import t from 'tap';
import { freshDb, sql, testClusters, urlFor, waitFor, withClient } from './harness/db.js';

const { clusters, other, otherSkipReason } = testClusters();

t.test('at least three clusters answer', async (t) => {
  t.ok(clusters.length >= 3, `have ${clusters.length} clusters`);
  t.equal(new Set(clusters.map((c) => c.port)).size, clusters.length, 'each on its own port');
  for (const c of clusters) {
    const [row] = await sql<{ version: string }>(urlFor(c, 'postgres'), 'SELECT version()');
    t.match(row?.version, new RegExp(`^PostgreSQL ${c.major}\\.`), `${c.name} reports PostgreSQL ${c.major}`);
  }
});

t.test('fresh databases are isolated', async (t) => {
  const c1 = clusters[0]!;
  const a = await freshDb(t, c1, 'iso');
  const b = await freshDb(t, c1, 'iso');
  t.not(a, b, 'distinct databases');
  await sql(a, 'CREATE TABLE only_in_a (id int PRIMARY KEY)');
  await sql(a, 'INSERT INTO only_in_a VALUES (1)');
  const inA = await sql(a, "SELECT to_regclass('public.only_in_a') AS r");
  const inB = await sql(b, "SELECT to_regclass('public.only_in_a') AS r");
  t.equal(inA[0]?.r, 'only_in_a', 'table exists where it was created');
  t.equal(inB[0]?.r, null, 'table absent from the other fresh database');
});

t.test('freshDb drops the database after a passing test', async (t) => {
  const c1 = clusters[0]!;
  let name = '';
  await t.test('inner', async (t) => {
    const url = await freshDb(t, c1, 'Drop_Me');
    name = decodeURIComponent(new URL(url).pathname.slice(1));
    t.match(name, /^drop_me_[0-9a-f]{12}$/, 'lowercase name from the prefix');
    await withClient(url, async (c) => t.equal((await c.query('SELECT current_database() AS d')).rows[0]?.d, name));
  });
  const gone = async () => (await sql(urlFor(c1, 'postgres'), 'SELECT 1 FROM pg_database WHERE datname = $1', [name])).length === 0;
  await waitFor(gone, { what: `database ${name} to be dropped`, timeoutMs: 10_000 });
  t.pass('dropped on teardown');
});

// Skipped (with the reason printed) when no second major version is installed.
t.test('other major version cluster', { skip: other ? false : (otherSkipReason ?? 'no other PostgreSQL version available') }, async (t) => {
  const o = other!;
  t.not(o.major, clusters[0]!.major, `other is PostgreSQL ${o.major}, primary ${clusters[0]!.major}`);
  const [row] = await sql<{ v: string }>(urlFor(o, 'postgres'), "SELECT current_setting('server_version_num') AS v");
  t.equal(Math.floor(Number(row?.v) / 10000), o.major, 'server reports that major version');
});
