// Multi-master (swap) syncs: every source's changes reach every other node,
// nothing bounces back, and conflicts are settled by the configured rule
// with exactly the expected winner, logged with every version.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { type TeardownTest, ownCluster, sql, testClusters, urlFor, waitFor, withClient } from './harness/db.js';
import { type Job, cli, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { formatStatus } from '../orchestrator/src/cli/print-status.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const schema = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
  CREATE TABLE notes (k text PRIMARY KEY, body text);
`;

function yaml(conflict: string, extra = ''): string {
  return `syncs:\n  s:\n    sources: [a, b]\n    targets: [c]\n    tables: { include: [public.items, public.notes] }\n    conflict: ${conflict}\n${extra}`;
}

async function conflicts(job: Job): Promise<
  {
    table_name: string;
    key: unknown;
    strategy: string;
    decision: string;
    winner: string | null;
    versions: { db: string; row: unknown; clock: string }[];
    detail: unknown;
  }[]
> {
  return sql(job.cfg.metadata, 'SELECT table_name, key, strategy, decision, winner, versions, detail FROM repl.conflict ORDER BY id');
}

t.test('writes on both sources reach every node; nothing comes back', async (t) => {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2!, c: c3! }, schema, yaml: yaml('latest') });
  await setUp(job);
  startDaemon(t, job);
  const { a, b, c } = job.urls as Record<string, string>;
  await sql(a!, `INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 50) g`);
  await sql(b!, `INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(101, 150) g`);
  await sql(b!, `INSERT INTO notes VALUES ('x', 'from b')`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await waitSame(job, 'notes', ['a', 'b', 'c']);
  t.equal((await sql(c!, 'SELECT count(*)::int AS n FROM items'))[0]!.n, 100, "c has both sources' rows");
  // Changes made by the applier are not captured again anywhere.
  await sql(a!, `UPDATE items SET qty = -qty WHERE id > 100`); // a changes rows that came from b
  await sql(b!, `DELETE FROM items WHERE id <= 10`); // b deletes rows that came from a
  await sql(a!, `UPDATE items SET id = id + 1000 WHERE id = 20`); // key change
  await waitFor(async () => (await digest(b!, 'items')).includes('(1020,a20,20)') && !(await digest(a!, 'items')).includes('(1,a1,1)'), {
    what: 'the second round to arrive',
  });
  await waitSame(job, 'items', ['a', 'b', 'c']);
  t.same(await sql(c!, 'SELECT min(qty)::int AS q FROM items WHERE id > 100 AND id < 1000'), [{ q: -150 }], "a's update of b's rows reached c");
  t.same(await sql(b!, 'SELECT count(*)::int AS n FROM items'), [{ n: 90 }]);
  for (const n of ['a', 'b']) {
    const own = await sql(job.urls[n]!, `SELECT count(*)::int AS n FROM repl.delta WHERE origin IS NOT NULL`);
    t.equal(own[0]!.n, 0, `${n} captured none of the applied rows`);
  }
  t.same(await conflicts(job), [], 'no conflicts were logged');
});

/**
 * A conflict made on purpose: item 1 exists everywhere, then (no daemon
 * running) `writes` change it on the sources in the order given, a second
 * apart; then the daemon runs. Returns the job, once every node agrees (or
 * `settle` says it is done).
 */
async function conflictCase(
  t: TeardownTest,
  conflict: string,
  writes: [string, string][],
  opts: { extra?: string; before?: (job: Job) => Promise<void>; same?: boolean } = {},
): Promise<Job> {
  const job = await makeJob(t, { nodes: { a: c1!, b: c2!, c: c3! }, schema, yaml: yaml(conflict, opts.extra) });
  await setUp(job);
  await opts.before?.(job);
  const first = startDaemon(t, job);
  await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'base', 1), (2, 'other', 2)`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  await first.stop();
  for (const [i, [db, stmt]] of writes.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, 20));
    await sql(job.urls[db]!, stmt);
  }
  startDaemon(t, job);
  if (opts.same !== false) await waitSame(job, 'items', ['a', 'b', 'c']);
  return job;
}

const onA = `UPDATE items SET name = 'from a', qty = 10 WHERE id = 1`;
const onB = `UPDATE items SET name = 'from b', qty = 20 WHERE id = 1`;
const row = async (job: Job, db: string): Promise<unknown> => (await sql(job.urls[db]!, 'SELECT name, qty FROM items WHERE id = 1'))[0] ?? null;

for (const [conflict, writes, winner] of [
  [
    'latest',
    [
      ['a', onA],
      ['b', onB],
    ],
    'b',
  ],
  [
    'latest',
    [
      ['b', onB],
      ['a', onA],
    ],
    'a',
  ],
  [
    'source',
    [
      ['a', onA],
      ['b', onB],
    ],
    'a',
  ],
  [
    'target',
    [
      ['b', onB],
      ['a', onA],
    ],
    'b',
  ],
  [
    '[b, a]',
    [
      ['b', onB],
      ['a', onA],
    ],
    'b',
  ],
  [
    '[a]',
    [
      ['a', onA],
      ['b', onB],
    ],
    'a',
  ],
] as [string, [string, string][], string][]) {
  t.test(`conflict: ${conflict}, ${writes.map(([d]) => d).join(' then ')} -> ${winner} wins`, async (t) => {
    const job = await conflictCase(t, conflict, writes);
    const expected = winner === 'a' ? { name: 'from a', qty: 10 } : { name: 'from b', qty: 20 };
    for (const db of ['a', 'b', 'c']) t.same(await row(job, db), expected, `${db} has ${winner}'s row`);
    const log = await conflicts(job);
    t.equal(log.length, 1, 'one conflict logged');
    t.match(log[0], { table_name: 'public.items', key: { id: 1 }, strategy: conflict, decision: 'winner', winner });
    t.same(
      log[0]!.versions.map((v) => [v.db, v.row]),
      [
        ['a', { id: 1, name: 'from a', qty: 10 }],
        ['b', { id: 1, name: 'from b', qty: 20 }],
      ],
      'both versions logged',
    );
    t.same(await sql(job.urls.c!, 'SELECT name FROM items WHERE id = 2'), [{ name: 'other' }], 'the untouched row is intact');
  });
}

t.test('conflict: latest counts deletes, both ways', async (t) => {
  const del = `DELETE FROM items WHERE id = 1`;
  const updateWins = await conflictCase(t, 'latest', [
    ['a', del],
    ['b', onB],
  ]);
  for (const db of ['a', 'b', 'c']) t.same(await row(updateWins, db), { name: 'from b', qty: 20 }, `${db}: the later update wins over the delete`);
  const deleteWins = await conflictCase(t, 'latest', [
    ['b', onB],
    ['a', del],
  ]);
  for (const db of ['a', 'b', 'c']) t.equal(await row(deleteWins, db), null, `${db}: the later delete wins`);
  const log = await conflicts(deleteWins);
  t.same(
    log[0]!.versions.map((v) => [v.db, v.row]),
    [
      ['a', null],
      ['b', { id: 1, name: 'from b', qty: 20 }],
    ],
    'the deleted version is logged as null',
  );
});

t.test('conflict: random picks as its logged seed says', async (t) => {
  const job = await conflictCase(t, 'random', [
    ['a', onA],
    ['b', onB],
  ]);
  const [c] = await conflicts(job);
  const { seed, candidates } = c!.detail as { seed: number; candidates: string[] };
  t.same(candidates, ['a', 'b']);
  t.equal(c!.winner, candidates[seed % candidates.length], 'the winner is candidates[seed % n]');
  const expected = c!.winner === 'a' ? { name: 'from a', qty: 10 } : { name: 'from b', qty: 20 };
  for (const db of ['a', 'b', 'c']) t.same(await row(job, db), expected, `${db} has the winner's row`);
});

t.test('conflict: skip leaves each node its own version, and logs it', async (t) => {
  const job = await conflictCase(
    t,
    'skip',
    [
      ['a', onA],
      ['b', onB],
    ],
    { same: false },
  );
  await waitFor(async () => (await conflicts(job)).length === 1, { what: 'the conflict to be logged' });
  t.same(await row(job, 'a'), { name: 'from a', qty: 10 });
  t.same(await row(job, 'b'), { name: 'from b', qty: 20 });
  t.same(await row(job, 'c'), { name: 'base', qty: 1 }, 'c keeps what it had');
  t.match((await conflicts(job))[0], { decision: 'skipped', winner: null });
  // A later change on one node alone is no conflict: it converges the key again.
  await sql(job.urls.b!, `UPDATE items SET qty = 30 WHERE id = 1`);
  await waitSame(job, 'items', ['a', 'b', 'c']);
  t.same(await row(job, 'a'), { name: 'from b', qty: 30 });
});

t.test('conflict: per-table override, and an SQL handler that merges', async (t) => {
  const job = await conflictCase(
    t,
    '{ default: source, tables: { public.items: { handler: "sql:public.merge_items" } } }',
    [
      ['a', onA],
      ['b', onB],
    ],
    {
      before: async (job) => {
        await sql(
          job.cfg.metadata,
          `CREATE FUNCTION public.merge_items(c jsonb) RETURNS jsonb LANGUAGE sql AS $$
        SELECT jsonb_build_object('id', (c->'key'->>'id')::int, 'name', 'merged',
                                  'qty', (SELECT sum((v->'row'->>'qty')::int) FROM jsonb_array_elements(c->'versions') v))
      $$`,
        );
      },
    },
  );
  for (const db of ['a', 'b', 'c']) t.same(await row(job, db), { name: 'merged', qty: 30 }, `${db} has the merged row`);
  const [c] = await conflicts(job);
  t.match(c, { strategy: 'handler sql:public.merge_items', decision: 'merged', winner: null, detail: { row: { id: 1, name: 'merged', qty: 30 } } });
});

t.test('conflict: a module handler names the winner or deletes', async (t) => {
  const pick = await conflictCase(
    t,
    '{ handler: ./pick.mjs }',
    [
      ['a', onA],
      ['b', onB],
    ],
    {
      before: async (job) => {
        await writeFile(path.join(job.dir, 'pick.mjs'), `export default (c) => c.versions.find((v) => v.row && v.row.qty === 10).db;\n`);
      },
    },
  );
  for (const db of ['a', 'b', 'c']) t.same(await row(pick, db), { name: 'from a', qty: 10 }, `${db} has the row the module picked`);
  const drop = await conflictCase(
    t,
    '{ handler: ./drop.mjs }',
    [
      ['a', onA],
      ['b', onB],
    ],
    {
      before: async (job) => {
        await writeFile(path.join(job.dir, 'drop.mjs'), `export default async () => null;\n`);
      },
    },
  );
  for (const db of ['a', 'b', 'c']) t.equal(await row(drop, db), null, `${db}: the module deleted the key`);
  t.match((await conflicts(drop))[0], { decision: 'deleted' });
});

t.test('conflict: abort stops the sync with the table and key named; other syncs go on', async (t) => {
  const extra = `  other:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.notes] }\n`;
  const job = await conflictCase(
    t,
    'abort',
    [
      ['a', onA],
      ['b', onB],
    ],
    { same: false, extra },
  );
  await waitFor(async () => (await sql(job.cfg.metadata, `SELECT 1 FROM repl.lane WHERE sync = 's' AND error LIKE '%abort%'`)).length > 0, {
    what: 'the abort to be recorded',
  });
  const [lane] = await sql<{ error: string; error_table: string }>(job.cfg.metadata, `SELECT error, error_table FROM repl.lane WHERE sync = 's' LIMIT 1`);
  t.match(lane!.error, /conflict on table public\.items key \{"id":1\}, changed on a and b, and the strategy is abort/);
  t.equal(lane!.error_table, 'public.items');
  t.same(await row(job, 'a'), { name: 'from a', qty: 10 }, 'nothing was applied');
  t.same(await row(job, 'b'), { name: 'from b', qty: 20 }, 'nothing was applied');
  await sql(job.urls.a!, `INSERT INTO notes VALUES ('still', 'working')`);
  await waitSame(job, 'notes', ['a', 'b']);
  t.same(await sql(job.urls.b!, 'SELECT body FROM notes'), [{ body: 'working' }], 'the other sync still runs');
});

t.test('exception handling: a colliding unique constraint is named in status, or repaired by a handler', async (t) => {
  const users = `CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE)`;
  const fix = `CREATE FUNCTION public.fix_email(f jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF f->>'constraint' <> 'users_email_key' THEN RETURN false; END IF;
      UPDATE users SET email = email || '#' || id WHERE email = substring(f->>'detail' FROM '=\\((.*)\\) already');
      RETURN FOUND;
    END $$`;
  // A module handler: renames, on b (whatever node failed), the address of b's own user.
  const moduleFix = `export default async (f, { query }) => {
    if (f.constraint !== 'users_email_key') return false;
    const rows = await query('b', "UPDATE users SET email = email || '#b' WHERE id = 2 AND email NOT LIKE '%#b' RETURNING id");
    return rows.length === 1;
  };\n`;
  for (const handler of [null, 'sql:public.fix_email', './fix.mjs']) {
    const job = await makeJob(t, {
      nodes: { a: c1!, b: c2! },
      schema: `${users}; ${fix}`,
      yaml: `syncs:\n  s:\n    sources: [a, b]\n    tables: { include: [public.users] }\n${handler ? `    exception_handlers: ["${handler}"]\n` : ''}`,
    });
    await writeFile(path.join(job.dir, 'fix.mjs'), moduleFix);
    await setUp(job);
    await sql(job.urls.a!, `INSERT INTO users VALUES (1, 'x@example.org')`);
    await sql(job.urls.b!, `INSERT INTO users VALUES (2, 'x@example.org')`);
    startDaemon(t, job);
    if (!handler) {
      await waitFor(async () => (await sql(job.cfg.metadata, `SELECT 1 FROM repl.lane WHERE error IS NOT NULL`)).length > 0, {
        what: 'the failure to be recorded',
      });
      const [lane] = await sql<{ error: string; error_table: string }>(
        job.cfg.metadata,
        `SELECT error, error_table FROM repl.lane WHERE error IS NOT NULL LIMIT 1`,
      );
      t.match(
        lane!.error,
        /^table public\.users on [ab]: duplicate key value violates unique constraint "users_email_key" \(Key \(email\)=\(x@example\.org\) already exists\.\)$/,
      );
      t.equal(lane!.error_table, 'public.users');
    } else {
      await waitSame(job, 'users', ['a', 'b']);
      const rows = await sql(job.urls.a!, 'SELECT id, email FROM users ORDER BY id');
      t.equal(rows.length, 2, `${handler}: both users survive`);
      if (handler.endsWith('.mjs'))
        t.same(
          rows,
          [
            { id: 1, email: 'x@example.org' },
            { id: 2, email: 'x@example.org#b' },
          ],
          "the module renamed b's user, and that replicated",
        );
      else t.equal(rows.filter((r) => String(r.email).includes('#')).length, 1, 'the handler renamed one address, on one node, and that replicated');
    }
  }
});

t.test('status counts conflicts; capra conflicts lists them with each version and the decision', async (t) => {
  const job = await conflictCase(t, 'latest', [
    ['a', onA],
    ['b', onB],
  ]);
  const st = await collectStatus(job.cfg, silentLogger);
  t.match(st.syncs[0], { name: 's', conflicts: 1, conflictsLastHour: 1 });
  t.match(formatStatus(st), /sync s: .*conflicts 1 \(1 in the last hour; capra conflicts lists them\)/);
  const list = await cli(['--config', job.configPath, 'conflicts']);
  t.equal(list.code, 0, list.stderr);
  t.comment(`capra conflicts printed: ${list.stdout}`);
  t.match(
    list.stdout,
    /^#\d+ \S+ sync s public\.items \{"id":1\}: a \{"id":1,"qty":10,"name":"from a"\} at [^;]+; b \{"id":1,"qty":20,"name":"from b"\} at [^;]+; latest -> b wins\n$/,
  );
  const json = JSON.parse((await cli(['--config', job.configPath, 'conflicts', '--json', '--sync', 's', '--limit', '5'])).stdout) as unknown[];
  t.match(json, [{ sync: 's', table: 'public.items', key: { id: 1 }, decision: 'winner', winner: 'b' }]);
  const bad = await cli(['--config', job.configPath, 'conflicts', '--sync', 'nope']);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /^capra: unknown sync nope \(syncs in .*: s\)\n$/);
});

t.test('latest compares commit times where track_commit_timestamp is on, and change times where it is off', async (t) => {
  // One server of our own, so it can be restarted with track_commit_timestamp = on; a and b are two databases on it.
  const own = await ownCluster(t, c1!.binDir);
  const info = own.info;
  for (const commitTs of [false, true]) {
    if (commitTs) {
      await sql(urlFor(info, 'postgres'), 'ALTER SYSTEM SET track_commit_timestamp = on');
      await own.stop();
      await own.start();
    }
    const job = await makeJob(t, {
      nodes: { a: info, b: info },
      schema,
      yaml: `syncs:\n  s:\n    sources: [a, b]\n    tables: { include: [public.items] }\n    conflict: latest\n`,
    });
    await setUp(job);
    const first = startDaemon(t, job);
    await sql(job.urls.a!, `INSERT INTO items VALUES (1, 'base', 1)`);
    await waitSame(job, 'items', ['a', 'b']);
    await first.stop();
    // a writes first but commits last; b writes and commits in between.
    await withClient(job.urls.a!, async (a) => {
      await a.query('BEGIN');
      await a.query(onA);
      await new Promise((r) => setTimeout(r, 50));
      await sql(job.urls.b!, onB);
      await new Promise((r) => setTimeout(r, 50));
      await a.query('COMMIT');
    });
    startDaemon(t, job);
    await waitSame(job, 'items', ['a', 'b']);
    const winner = commitTs ? 'a' : 'b';
    t.same(
      await row(job, 'a'),
      winner === 'a' ? { name: 'from a', qty: 10 } : { name: 'from b', qty: 20 },
      `track_commit_timestamp ${commitTs ? 'on: a committed last and wins' : 'off: b wrote last and wins'}`,
    );
    const [c] = await conflicts(job);
    t.match(
      c,
      {
        winner,
        versions: [
          { db: 'a', clock: commitTs ? 'commit' : 'change' },
          { db: 'b', clock: commitTs ? 'commit' : 'change' },
        ],
      },
      'the log says which clock was compared',
    );
  }
});

t.test('exception handling in a one-way sync: the handler runs on the failing target', async (t) => {
  const users = `CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE)`;
  // On the target only: a local row holds the address the source's new user has.
  const fix = `CREATE FUNCTION public.free_email(f jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF f->>'node' <> 'b' OR f->>'constraint' <> 'users_email_key' THEN RETURN false; END IF;
      DELETE FROM users WHERE id = 99;
      RETURN FOUND;
    END $$`;
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: `${users}; ${fix}`,
    yaml: `syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    copy_data: never\n    exception_handlers: ["sql:public.free_email"]\n`,
  });
  await setUp(job);
  await sql(job.urls.b!, `INSERT INTO users VALUES (99, 'x@example.org')`);
  await sql(job.urls.a!, `INSERT INTO users VALUES (1, 'x@example.org')`);
  startDaemon(t, job);
  await waitSame(job, 'users', ['a', 'b']);
  t.same(await sql(job.urls.b!, 'SELECT id, email FROM users'), [{ id: 1, email: 'x@example.org' }], "the handler freed the address on b, and a's row arrived");
});
