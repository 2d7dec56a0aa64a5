// Named groups (groups.tables, groups.databases) in syncs and clones, and the
// include/exclude rule: a table named itself beats its schema, either way.
import t from 'tap';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { tableSelector } from '../orchestrator/src/db/table-ref.js';
import { selectedSequences } from '../orchestrator/src/sync/sequence-selection.js';
import { type Job, cli, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { sql, testClusters, withClient } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;

const tracked = async (job: Job, sync: string): Promise<string[]> =>
  (await sql<{ t: string }>(job.cfg.metadata, `SELECT schema_name || '.' || table_name AS t FROM repl.sync_table WHERE sync = $1 ORDER BY 1`, [sync])).map(
    (r) => r.t,
  );

const count = async (url: string, table: string): Promise<number> => (await sql(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

t.test('the include/exclude rule: a table named itself wins over its schema, both ways', async (t) => {
  const sel = tableSelector({ include: ['public', 'sales.orders'], exclude: ['sales', 'public.skip'] });
  t.ok(sel.selected({ schema: 'sales', table: 'orders' }), 'named in include, schema excluded: in');
  t.notOk(sel.selected({ schema: 'sales', table: 'audit' }), 'schema excluded: out');
  t.notOk(sel.selected({ schema: 'public', table: 'skip' }), 'named in exclude, schema included: out');
  t.ok(sel.selected({ schema: 'public', table: 'keep' }), 'schema included: in');
  t.notOk(tableSelector({ include: ['public.t'], exclude: ['public.t'] }).selected({ schema: 'public', table: 't' }), 'named in both: out');
  t.ok(tableSelector({ include: [], exclude: [] }).selected({ schema: 'any', table: 't' }), 'empty include: everything');

  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: `CREATE SCHEMA sales;
      CREATE TABLE sales.orders (id serial PRIMARY KEY, v text);
      CREATE TABLE sales.audit (id serial PRIMARY KEY, v text);
      CREATE TABLE public.keep (id serial PRIMARY KEY, v text);
      CREATE TABLE public.skip (id serial PRIMARY KEY, v text)`,
    yaml: [
      'syncs:',
      '  s:',
      '    sources: [a]',
      '    targets: [b]',
      '    tables: { include: [public, sales.orders], exclude: [sales, public.skip] }',
      '    copy_data: never',
    ].join('\n'),
  });
  await setUp(job);
  t.same(await tracked(job, 's'), ['public.keep', 'sales.orders'], 'add-triggers registers the table named in include and leaves out the one named in exclude');
  const seqs = await withClient(job.urls.a!, (c) => selectedSequences(c, job.cfg.syncs.s!.tables));
  t.same(
    seqs.map((s) => `${s.schema}.${s.name}`),
    ['public.keep_id_seq', 'sales.orders_id_seq'],
    'sequences follow their tables: the named one in an excluded schema is carried, the excluded one in an included schema is not',
  );

  startDaemon(t, job);
  await sql(
    job.urls.a!,
    `BEGIN;
     INSERT INTO public.skip (v) VALUES ('no'); INSERT INTO sales.audit (v) VALUES ('no');
     INSERT INTO sales.orders (v) VALUES ('yes'); INSERT INTO public.keep (v) VALUES ('yes');
     COMMIT`,
  );
  await waitSame(job, 'sales.orders', ['a', 'b']);
  await waitSame(job, 'public.keep', ['a', 'b']);
  t.equal(await count(job.urls.b!, 'sales.orders'), 1, 'a write to the table named in include is replicated');
  t.equal(await count(job.urls.b!, 'public.skip'), 0, 'a write to the table named in exclude is not (same transaction)');
  t.equal(await count(job.urls.b!, 'sales.audit'), 0, 'nor one to another table of the excluded schema');
});

const groupsYaml = [
  'groups:',
  '  tables:',
  `    pair: [public.x, 'public."Odd T"']`,
  '  databases:',
  '    hq: [a]',
  '    rest: [b, c]',
  '    fan: [a, b, c]',
].join('\n');

t.test('groups in the config: checked naming the key, expanded in syncs', async (t) => {
  const file = (extra: string): string =>
    ['name: shop', 'databases: { a: "postgres://h/a", b: "postgres://h/b", c: "postgres://h/c" }', groupsYaml, 'syncs:', '  s:', extra].join('\n');
  const ok = parseConfigText(file(`    sources: ['@hq']\n    targets: ['@rest']\n    tables: { include: ['@pair', other], exclude: [other.t] }`), '/x.yml', {});
  t.same(ok.syncs.s!.sources, ['a']);
  t.same(ok.syncs.s!.targets, ['b', 'c']);
  t.same(ok.syncs.s!.tables.include, ['public.x', 'public."Odd T"', 'other']);
  t.same(ok.groups.databases.fan, ['a', 'b', 'c']);
  const bad: [string, string][] = [
    [file(`    sources: ['@nope']\n    targets: [b]`), `syncs.s.sources[0]: unknown database group "nope" (database groups: hq, rest, fan)`],
    [file(`    sources: ['@hq']\n    targets: [b, '@fan']`), 'syncs.s.targets[1]: database a is listed twice (through group @fan)'],
    [file(`    sources: [a]\n    targets: [b]\n    tables: { exclude: ['@t'] }`), 'syncs.s.tables.exclude[0]: unknown table group "t" (table groups: pair)'],
    [file('    sources: [a]\n    targets: [b]').replace('[a, b, c]', '[a, zz]'), 'groups.databases.fan[1]: unknown database "zz" (databases: a, b, c)'],
    [file('    sources: [a]\n    targets: [b]').replace('[a, b, c]', '[]'), 'groups.databases.fan: a group needs at least one database'],
    [file('    sources: [a]\n    targets: [b]').replace('public.x,', 'x,'), 'groups.tables.pair[0]: expected schema.table (a group lists tables), got "x"'],
    [
      file('    sources: [a]\n    targets: [b]').replace('public.x,', 'a.b.c,'),
      'groups.tables.pair[0]: expected schema.table (a group lists tables), got "a.b.c"',
    ],
    [
      file('    sources: [a]\n    targets: [b]').replace('public.x,', `'"public.x',`),
      'groups.tables.pair[0]: bad table name: unterminated quote in "\\"public.x"',
    ],
  ];
  for (const [text, msg] of bad) t.throws(() => parseConfigText(text, '/x.yml', {}), { message: `config /x.yml: ${msg}` }, msg);
});

t.test('groups in a sync replicate, and clones by relgroup/dbgroup from psql and the CLI', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v text); CREATE TABLE "Odd T" (id int PRIMARY KEY); CREATE TABLE y (id int PRIMARY KEY)',
    yaml: `${groupsYaml}\nsyncs:\n  s:\n    sources: ['@hq']\n    targets: ['@rest']\n    tables: { include: ['@pair'] }\n    copy_data: never`,
  });
  // Rows written before the triggers exist: only a clone brings them over.
  await sql(job.urls.a!, `INSERT INTO x SELECT g, 'old ' || g FROM generate_series(1, 300) g; INSERT INTO "Odd T" SELECT generate_series(1, 7)`);
  await setUp(job);
  t.same(await tracked(job, 's'), ['public.Odd T', 'public.x'], 'the table group is the sync include');

  const queue = async (args: string): Promise<number> => Number((await sql<{ id: string }>(job.cfg.metadata, `SELECT repl.clone(${args}) AS id`))[0]!.id);
  const bad: [string, RegExp][] = [
    [`relgroup => 'nope', dbgroup => 'fan'`, /^repl\.clone: unknown relgroup "nope" \(table groups: pair\)$/],
    [`relgroup => 'pair', dbgroup => 'nope'`, /^repl\.clone: unknown dbgroup "nope" \(database groups: fan, hq, rest\)$/],
    [`tables => '{x}', relgroup => 'pair', dbgroup => 'fan'`, /give tables or relgroup, not both/],
    [`relgroup => 'pair', dbs => 'a:source,b:target', dbgroup => 'fan'`, /give dbs or dbgroup, not both/],
    [`relgroup => 'pair', dbgroup => 'hq'`, /nothing receives the copy/],
  ];
  for (const [args, re] of bad) await t.rejects(queue(args), { message: re }, `repl.clone(${args})`);
  t.equal(await count(job.cfg.metadata, 'repl.clone'), 0, 'nothing was queued by the bad calls');

  const byGroups = await queue(`relgroup => 'pair', dbgroup => 'fan', start => '1 day'`);
  const withSync = await queue(`sync => 's', relgroup => 'pair', start => '1 day'`);
  const tables = [
    { schema: 'public', table: 'x' },
    { schema: 'public', table: 'Odd T' },
  ];
  const dbs = [
    { db: 'a', role: 'source' },
    { db: 'b', role: 'target' },
    { db: 'c', role: 'target' },
  ];
  t.same(
    await sql(job.cfg.metadata, 'SELECT id::int, sync, tables, dbs FROM repl.clone ORDER BY id'),
    [
      { id: byGroups, sync: null, tables, dbs },
      { id: withSync, sync: 's', tables, dbs },
    ],
    'relgroup is the group tables in order; dbgroup copies from its first database to the others',
  );
  await sql(job.cfg.metadata, `SELECT repl.clone_cancel(id) FROM repl.clone WHERE state = 'queued'`);

  startDaemon(t, job);
  const before = await count(job.cfg.metadata, 'repl.clone');
  for (const [args, re] of [
    [['--relgroup', 'nope', '--dbgroup', 'fan'], /^capra: repl\.clone: unknown relgroup "nope" \(table groups: pair\)\n$/],
    [['--relgroup', 'pair', '--dbgroup', 'nope'], /^capra: repl\.clone: unknown dbgroup "nope" \(database groups: fan, hq, rest\)\n$/],
  ] as [string[], RegExp][]) {
    const r = await cli(['--config', job.configPath, 'clone', ...args]);
    t.not(r.code, 0, `clone ${args.join(' ')} fails`);
    t.match(r.stderr, re);
  }
  t.equal(await count(job.cfg.metadata, 'repl.clone'), before, 'the CLI queued nothing for an unknown group');

  const r = await cli(['--config', job.configPath, 'clone', '--relgroup', 'pair', '--dbgroup', 'fan', '--wait']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^clone (\d+) queued\nclone \1 done: 2 table\(s\), [\d,]+ rows/);
  for (const n of ['b', 'c']) {
    t.equal(await digest(job.urls[n]!, 'x'), await digest(job.urls.a!, 'x'), `x copied to ${n}`);
    t.equal(await count(job.urls[n]!, '"Odd T"'), 7, `"Odd T" copied to ${n}`);
    t.equal(await count(job.urls[n]!, 'y'), 0, `y, in no group, not copied to ${n}`);
  }

  // The sync of database groups replicates from the group's source to the other group's targets.
  await sql(job.urls.a!, `INSERT INTO x VALUES (1000, 'new')`);
  await waitSame(job, 'x', ['a', 'b', 'c']);
  t.equal(await count(job.urls.c!, 'x'), 301, 'a write on the @hq source reaches both @rest targets');
});
