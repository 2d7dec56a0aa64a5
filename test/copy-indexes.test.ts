// Index handling on a copy: a sync's copy_indexes (and a table's own
// threshold), and a clone's drop_indexes_above, drop the receivers' indexes
// larger than the threshold that back no constraint, copy, and rebuild them in
// the copy's transaction. An index that was dropped and built again has a new
// oid and the same definition; one left alone keeps its oid.
import t, { type Test } from 'tap';
import { executeClone } from '../orchestrator/src/clone/execute.js';
import { claimNextClone } from '../orchestrator/src/clone/request.js';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import type { Logger } from '../orchestrator/src/util/logger.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, digest, makeJob, setUp, startDaemon } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const [c1, c2] = testClusters().clusters;

// x: a plain index (x_v), a primary key and a unique constraint (their indexes are never dropped); y: a plain index.
const schema = `
  CREATE TABLE x (id int PRIMARY KEY, v text, w int CONSTRAINT x_w_key UNIQUE);
  CREATE INDEX x_v ON x (v);
  CREATE TABLE y (id int PRIMARY KEY, v text);
  CREATE INDEX y_v ON y (v);`;

const fill = (table: 'x' | 'y', n: number, tag: string): string =>
  `INSERT INTO ${table} SELECT g, '${tag}' || g${table === 'x' ? ', g' : ''} FROM generate_series(1, ${n}) g`;

/** Each index of the table: its oid and definition. */
async function indexes(url: string, table: string): Promise<Record<string, { oid: number; def: string }>> {
  const rows = await sql<{ name: string; oid: number; def: string }>(
    url,
    `SELECT indexrelid::regclass::text AS name, indexrelid::int AS oid, pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = $1::regclass`,
    [table],
  );
  return Object.fromEntries(rows.map((r) => [r.name, { oid: r.oid, def: r.def }]));
}

type Indexes = Awaited<ReturnType<typeof indexes>>;

/** Which indexes were rebuilt (new oid), checking every one is there with its definition. */
function rebuilt(t: Test, before: Indexes, after: Indexes, what: string): string[] {
  t.same(
    Object.fromEntries(Object.entries(after).map(([n, i]) => [n, i.def])),
    Object.fromEntries(Object.entries(before).map(([n, i]) => [n, i.def])),
    `${what}: every index is there, with the same definition`,
  );
  return Object.keys(before)
    .filter((n) => after[n] && after[n]!.oid !== before[n]!.oid)
    .sort();
}

function capture(): { logger: Logger; lines: { msg: string; obj: Record<string, unknown> }[] } {
  const lines: { msg: string; obj: Record<string, unknown> }[] = [];
  const log = (obj: object | string, msg?: string): void =>
    void lines.push({ msg: msg ?? String(obj), obj: typeof obj === 'object' ? (obj as Record<string, unknown>) : {} });
  const logger: Logger = { debug: log, info: log, warn: log, error: log, child: () => logger };
  return { logger, lines };
}

/** Runs the sync's initial copies into b; which of x's and y's indexes on b were rebuilt. */
async function seedB(t: Test, job: Job): Promise<{ x: string[]; y: string[] }> {
  const before = { x: await indexes(job.urls.b!, 'x'), y: await indexes(job.urls.b!, 'y') };
  await setUp(job);
  startDaemon(t, job);
  await waitFor(async () => (await sql(job.cfg.metadata, 'SELECT 1 FROM repl.seeded')).length === 2, { what: 'the initial copies' });
  for (const table of ['x', 'y']) t.equal(await digest(job.urls.b!, table), await digest(job.urls.a!, table), `${table} copied`);
  return { x: rebuilt(t, before.x, await indexes(job.urls.b!, 'x'), 'x'), y: rebuilt(t, before.y, await indexes(job.urls.b!, 'y'), 'y') };
}

t.test('copy_indexes: the large plain index is dropped and rebuilt; constraint indexes and a table over its own threshold are not', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: [
      'syncs:',
      '  s:',
      '    sources: [a]',
      '    targets: [b]',
      '    tables: { include: [public.x, public.y] }',
      '    copy_data: always',
      '    copy_indexes: { drop_above: 8kB, tables: { public.y: { drop_above: 1GB } } }',
    ].join('\n'),
  });
  t.same(job.cfg.syncs.s!.copyIndexes, { dropAbove: 8192, tables: { 'public.y': { dropAbove: 2 ** 30 } } }, 'sizes read as bytes');
  await sql(job.urls.a!, `${fill('x', 500, 'a')}; ${fill('y', 500, 'a')}`);
  await sql(job.urls.b!, `${fill('x', 3000, 'stale')}; ${fill('y', 3000, 'stale')}`);
  const size = await sql<{ n: number }>(job.urls.b!, `SELECT pg_relation_size('x_v')::int AS n`);
  t.ok(size[0]!.n > 8192, `control: x_v on b is over the threshold (${size[0]!.n} bytes)`);
  const rebuiltOnB = await seedB(t, job);
  t.same(rebuiltOnB.x, ['x_v'], 'x: only the plain index was dropped and rebuilt');
  t.same(rebuiltOnB.y, [], 'y: under its own 1GB threshold, nothing dropped');
});

t.test("copy_indexes with a threshold for one table only leaves the other tables' indexes alone", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x, public.y] }\n    copy_data: always\n    copy_indexes: { tables: { x: { drop_above: 0 } } }',
  });
  await sql(job.urls.a!, `${fill('x', 100, 'a')}; ${fill('y', 100, 'a')}`);
  const rebuiltOnB = await seedB(t, job);
  t.same(rebuiltOnB.x, ['x_v'], 'x (unqualified: public.x), threshold 0: its plain index rebuilt');
  t.same(rebuiltOnB.y, [], 'y, no threshold: nothing dropped');
});

t.test("clone's drop_indexes_above: a threshold above the index's size drops nothing, one below drops it", async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x] }\n    copy_data: never',
  });
  await sql(job.urls.a!, fill('x', 2000, 'a'));
  await sql(job.urls.b!, fill('x', 2000, 'stale'));
  await setUp(job);
  const conns = new Connections(job.cfg, 'capra-clone', silentLogger);
  t.teardown(() => conns.close());
  const clone = async (args: string): Promise<{ rebuilt: string[]; lines: string[] }> => {
    const before = await indexes(job.urls.b!, 'x');
    await sql(job.cfg.metadata, `SELECT repl.clone(${args})`);
    const req = (await conns.with(Connections.META, (c) => claimNextClone(c)))!;
    const { logger, lines } = capture();
    t.equal(await executeClone(conns, job.name, req, logger), 'done', `${args}: done`);
    t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'), `${args}: b is identical to a`);
    return { rebuilt: rebuilt(t, before, await indexes(job.urls.b!, 'x'), args), lines: lines.map((l) => l.msg) };
  };
  const high = await clone(`sync => 's', drop_indexes_above => '1GB'`);
  t.same(high.rebuilt, [], 'above the size: nothing dropped');
  t.notOk(high.lines.includes('clone: indexes dropped for the copy'), 'and nothing said about it');
  const low = await clone(`sync => 's', drop_indexes_above => '8 kB'`);
  t.same(low.rebuilt, ['x_v'], 'below the size: the plain index dropped and rebuilt');
  t.ok(low.lines.includes('clone: indexes dropped for the copy') && low.lines.includes('clone: index rebuilt'), 'both steps logged');
  const all = await clone(`sync => 's', drop_indexes => true`);
  t.same(all.rebuilt, ['x_v'], 'drop_indexes alone: every plain index, as before');
  t.same(
    await sql(job.cfg.metadata, `SELECT drop_indexes, tables->0->'drop_indexes_above' AS above FROM repl.clone ORDER BY id`),
    [
      { drop_indexes: true, above: 2 ** 30 },
      { drop_indexes: true, above: 8192 },
      { drop_indexes: true, above: null },
    ],
    'a threshold implies drop_indexes and goes with each table, in bytes',
  );
  await t.rejects(
    sql(job.cfg.metadata, `SELECT repl.clone(sync => 's', drop_indexes_above => 'lots')`),
    /repl\.clone: drop_indexes_above: expected a size such as 100MB, 1GB, 8kB or 0, got "lots"/,
    'a bad size is refused where it is given',
  );
});

t.test('copy_indexes sizes are checked, the message naming the key', async (t) => {
  const yaml = (ci: string): string =>
    `name: j\ndatabases:\n  a: postgres://h/a\n  b: postgres://h/b\nsyncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_indexes: ${ci}\n`;
  for (const [ci, message] of [
    ['{ drop_above: lots }', 'syncs.s.copy_indexes.drop_above: expected a size such as 100MB, 1GB, 8kB or 0, got "lots"'],
    ['{ drop_above: -5 }', 'syncs.s.copy_indexes.drop_above: expected a size such as 100MB, 1GB, 8kB or 0, got -5'],
    [
      '{ tables: { public.big: { drop_above: 3 parsecs } } }',
      'syncs.s.copy_indexes.tables.public.big.drop_above: expected a size such as 100MB, 1GB, 8kB or 0, got "3 parsecs"',
    ],
    ['{ drop_abov: 1GB }', 'syncs.s.copy_indexes.drop_abov: unknown key (expected one of: drop_above, tables)'],
  ] as const) {
    t.throws(() => parseConfigText(yaml(ci), 'capra.yml', {}), { message: new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) }, ci);
  }
  const ok = (ci: string) => parseConfigText(yaml(ci), 'capra.yml', {}).syncs.s!.copyIndexes;
  t.same(ok('{ drop_above: 0 }'), { dropAbove: 0, tables: {} }, '0: every index with storage');
  t.same(ok('{ drop_above: 100MB }'), { dropAbove: 100 * 2 ** 20, tables: {} });
  t.same(ok('null'), { dropAbove: null, tables: {} }, 'unset: no index is dropped');
});
