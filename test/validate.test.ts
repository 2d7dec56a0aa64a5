// capra validate compares a live job's nodes with what install and
// add-triggers made: a dropped and a disabled capture trigger are found and
// fixed on a running sync (which then replicates again), and a changed key,
// an orphaned consumer, a column type that differs between nodes and a node
// installed by a newer capra are each named; --fix repairs the first two and
// leaves the last two, which capra start refuses as well.
import t, { type Test } from 'tap';
import { type Job, cli, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters } from './harness/db.js';

const [c1, c2] = testClusters().clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text);
  CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
`;
const SYNC = 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.items, public.pairs] }';

async function job(t: Test): Promise<Job> {
  const j = await makeJob(t, { nodes: { a: c1!, b: c2! }, schema, yaml: SYNC });
  await setUp(j);
  return j;
}

const validate = (j: Job, ...args: string[]) => cli(['--config', j.configPath, 'validate', ...args]);
const problems = (stdout: string): string[] => stdout.split('\n').filter((l) => l.startsWith('problem: '));

t.test('a dropped and a disabled capture trigger on a live sync: found, fixed, replicating again', async (t) => {
  const j = await job(t);
  startDaemon(t, j);
  const a = j.urls.a!;
  await sql(a, `INSERT INTO items VALUES (1, 'before')`);
  await waitSame(j, 'items', ['a', 'b']);

  const clean = await validate(j);
  t.equal(clean.code, 0, `a fresh install validates: ${clean.stdout}${clean.stderr}`);
  t.match(clean.stdout, /^backlog: sync s, a -> b: \d+ change\(s\) pending, oldest \d+ s$/m, 'the backlog of the lane is reported');

  await sql(a, 'DROP TRIGGER capra_capture_row ON items');
  await sql(a, 'ALTER TABLE pairs DISABLE TRIGGER capra_capture_row');
  const before = await validate(j);
  t.comment(`validate before --fix:\n${before.stdout}`);
  t.equal(before.code, 1, 'validate exits 1');
  t.match(
    before.stdout,
    /^problem: node a, sync s, table public\.items: capture trigger capra_capture_row is missing; --fix would .+$/m,
    'names the dropped trigger',
  );
  t.match(
    before.stdout,
    /^problem: node a, sync s, table public\.pairs: capture trigger capra_capture_row is disabled; --fix would .+$/m,
    'names the disabled trigger',
  );
  t.equal(problems(before.stdout).length, 2, 'and nothing else');

  const json = await validate(j, '--json');
  t.equal(json.code, 1, 'validate --json exits 1 too');
  const list = JSON.parse(json.stdout) as { kind: string; node?: string; table?: string; what?: string }[];
  t.same(
    list.filter((e) => e.kind === 'problem').map((e) => [e.node, e.table, e.what]),
    [
      ['a', 'public.items', 'capture trigger capra_capture_row is missing'],
      ['a', 'public.pairs', 'capture trigger capra_capture_row is disabled'],
    ],
    '--json lists the same problems',
  );

  const fix = await validate(j, '--fix');
  t.comment(`validate --fix:\n${fix.stdout}`);
  t.equal(fix.code, 0, `--fix repairs both and exits 0: ${fix.stderr}`);
  t.match(fix.stdout, /^fixed: node a, sync s, table public\.items: .+$/m, 'says what it did for items');
  t.match(fix.stdout, /^fixed: node a, sync s, table public\.pairs: .+$/m, 'and for pairs');
  const after = await validate(j);
  t.comment(`validate after --fix:\n${after.stdout}`);
  t.equal(after.code, 0, 'validate then exits 0');
  t.same(
    await sql(
      a,
      `SELECT tgrelid::regclass::text AS rel, tgname AS name, tgenabled AS e FROM pg_trigger
        WHERE tgname IN ('capra_capture_row', 'capra_capture_replica') ORDER BY 1, 2`,
    ),
    [
      { rel: 'items', name: 'capra_capture_replica', e: 'R' },
      { rel: 'items', name: 'capra_capture_row', e: 'O' },
      { rel: 'pairs', name: 'capra_capture_replica', e: 'R' },
      { rel: 'pairs', name: 'capra_capture_row', e: 'O' },
    ],
    'both tables have their row triggers back, together capturing under every role (origin and replica)',
  );

  await sql(a, `INSERT INTO items VALUES (2, 'after the fix')`);
  await sql(a, `INSERT INTO pairs VALUES (1, 'x', 'after the fix')`);
  await waitSame(j, 'items', ['a', 'b']);
  await waitSame(j, 'pairs', ['a', 'b']);
  t.equal((await sql(j.urls.b!, 'SELECT count(*)::int AS n FROM pairs'))[0]!.n, 1, 'a write reaches the target again');
});

t.test('a changed key: found, and the capture regenerated with the new key', async (t) => {
  const j = await job(t);
  for (const url of [j.urls.a!, j.urls.b!]) await sql(url, 'ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (id, name)');
  const before = await validate(j);
  t.equal(before.code, 1, 'validate exits 1');
  t.match(before.stdout, /^problem: node a, sync s, table public\.items: it is registered with key \(id\), but its key is now \(id, name\); --fix would .+$/m);
  t.match(before.stdout, /^problem: node a, sync s, table public\.items: its capture function repl\.capture_\d+\(\) does not write the key \(id, name\)/m);
  const fix = await validate(j, '--fix');
  t.equal(fix.code, 0, `--fix exits 0: ${fix.stdout}${fix.stderr}`);
  t.same(await sql(j.urls.a!, `SELECT key_cols FROM repl.consumer_table WHERE relid = 'items'::regclass`), [{ key_cols: ['id', 'name'] }]);
  await sql(j.urls.a!, `INSERT INTO items VALUES (5, 'k')`);
  t.same(await sql(j.urls.a!, `SELECT pk FROM repl.delta WHERE relid = 'items'::regclass`), [{ pk: { id: 5, name: 'k' } }], 'captures the new key');
  t.equal((await validate(j)).code, 0, 'validate then exits 0');
});

t.test('an orphaned consumer: found and removed', async (t) => {
  const j = await job(t);
  await sql(j.urls.a!, `INSERT INTO repl.consumer (job, sync, target, position) VALUES ($1, 'gone', 'b', pg_current_snapshot())`, [j.name]);
  const before = await validate(j);
  t.equal(before.code, 1, 'validate exits 1');
  t.match(before.stdout, /^problem: node a, sync gone: consumer for target b is orphaned: its sync is no longer in the config; --fix would .+$/m);
  t.equal((await validate(j, '--sync', 's')).code, 0, 'with --sync, orphans are not looked for');
  const fix = await validate(j, '--fix');
  t.equal(fix.code, 0, `--fix exits 0: ${fix.stdout}${fix.stderr}`);
  t.match(fix.stdout, /^fixed: node a, sync gone: forgot sync gone here/m, 'says what it did');
  t.same(await sql(j.urls.a!, `SELECT sync FROM repl.consumer WHERE job = $1 ORDER BY 1`, [j.name]), [{ sync: 's' }], 'only the sync of the config is left');
});

t.test('a column type that differs between nodes: named, and left to the operator', async (t) => {
  const j = await job(t);
  await sql(j.urls.b!, 'ALTER TABLE pairs ALTER COLUMN v TYPE integer USING NULL');
  const before = await validate(j);
  t.equal(before.code, 1, 'validate exits 1');
  t.match(before.stdout, /^problem: node b, sync s, table public\.pairs: column v is integer, text on a: alter the table to match; --fix cannot fix this$/m);
  const fix = await validate(j, '--fix');
  t.equal(fix.code, 1, '--fix cannot fix it: exit 1');
  t.match(fix.stdout, /^problem: node b, sync s, table public\.pairs: column v is integer/m, 'and names it still');
  t.notMatch(fix.stdout, /^fixed:/m, 'having done nothing');
});

t.test('a node installed by a newer capra: refused by validate and by capra start', async (t) => {
  const j = await job(t);
  await sql(j.urls.b!, `INSERT INTO repl.node_migrations (id, name, hash) VALUES (999999, '999999_future', 'x')`);
  const v = await validate(j, '--fix');
  t.equal(v.code, 1, 'validate exits 1');
  t.match(v.stdout, /^problem: node b: its node schema is at migration level 999999, newer than this capra's \d+: upgrade capra .+; --fix cannot fix this$/m);
  const start = await cli(['--config', j.configPath, 'start']);
  t.teardown(() => cli(['--config', j.configPath, 'stop']).then(() => undefined));
  t.equal(start.code, 1, 'capra start exits 1');
  t.match(
    start.stderr,
    /^capra: database b: its node schema is at migration level 999999, newer than this capra's \d+: upgrade capra/,
    'one line naming the node',
  );
  t.equal(start.stderr.trim().split('\n').length, 1, 'just that line');
  const fg = await cli(['--config', j.configPath, 'start', '--foreground'], { timeoutMs: 30_000 });
  t.equal(fg.code, 1, 'capra start --foreground (systemd) exits 1 too');
  t.match(fg.stderr, /^capra: database b: its node schema is at migration level 999999/, 'naming the node');
});
