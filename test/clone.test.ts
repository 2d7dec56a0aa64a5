// Clones: repl.clone() checks its arguments where it is called, the daemon
// copies tables by streaming COPY from the source(s) into every receiver,
// atomically per table, and never loses a change a running sync applies.
import t from 'tap';
import { executeClone } from '../orchestrator/src/clone/execute.js';
import { claimNextClone, finishClone } from '../orchestrator/src/clone/request.js';
import { progressLine, readClone, summaryLine } from '../orchestrator/src/clone/watch.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { splitList } from '../orchestrator/src/cli/clone-command.js';
import { formatStatus } from '../orchestrator/src/cli/print-status.js';
import { collectStatus } from '../orchestrator/src/status/status.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { type Job, cli, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';
import { type TeardownTest, sql, testClusters, waitFor, withClient } from './harness/db.js';

const [c1, c2, c3] = testClusters().clusters;

const count = async (url: string, table: string): Promise<number> => (await sql(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

/** Client sessions on the database of `url` other than the asking one. */
const clientsOn = async (url: string): Promise<number> =>
  (
    await sql(
      url,
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    )
  )[0]!.n;

/** Sessions on the database of `url` that wait for a lock held by backend `pid`. */
const waitingFor = async (url: string, pid: number): Promise<number> =>
  (await sql(url, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND $1 = ANY (pg_blocking_pids(pid))', [pid]))[0]!.n;

async function queue(job: Job, args: string, params: unknown[] = []): Promise<number> {
  return Number((await sql<{ id: string }>(job.cfg.metadata, `SELECT repl.clone(${args}) AS id`, params))[0]!.id);
}

interface CloneRow {
  state: string;
  error: string | null;
  started: Date | null;
  ended: Date | null;
}

async function cloneRow(job: Job, id: number): Promise<CloneRow> {
  return (await sql<CloneRow>(job.cfg.metadata, 'SELECT state, error, started, ended FROM repl.clone WHERE id = $1', [id]))[0]!;
}

async function waitEnded(job: Job, id: number, timeoutMs = 60_000): Promise<CloneRow> {
  let row!: CloneRow;
  await waitFor(
    async () => {
      row = await cloneRow(job, id);
      return ['done', 'failed', 'cancelled'].includes(row.state);
    },
    { what: `clone ${id} to end`, timeoutMs },
  );
  return row;
}

async function tableStates(job: Job, id: number): Promise<Record<string, { state: string; rows: number; note: string | null }>> {
  const rows = await sql<{ k: string; state: string; rows: string; note: string | null }>(
    job.cfg.metadata,
    `SELECT table_name || '@' || target AS k, state, rows, note FROM repl.clone_table WHERE clone_id = $1`,
    [id],
  );
  return Object.fromEntries(rows.map((r) => [r.k, { state: r.state, rows: Number(r.rows), note: r.note }]));
}

// A BEFORE INSERT trigger that fires even for the applier (ENABLE ALWAYS) and
// waits on advisory lock 4242 at one row: a test holding that lock stalls a
// clone's COPY halfway, with rows already streamed.
const stallAt = (id: number): string => `
  CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.id = ${id} THEN PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NEW; END $$;
  CREATE TRIGGER stall BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION stall();
  ALTER TABLE x ENABLE ALWAYS TRIGGER stall;`;

/** Holds advisory lock 4242 on a database until release() is called. */
async function holdStall(url: string): Promise<{ release: () => Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const done = withClient(url, async (c) => {
    await c.query('SELECT pg_advisory_lock(4242)');
    locked();
    await released;
  });
  await isLocked;
  return {
    release: async () => {
      release();
      await done;
    },
  };
}

const xSchema = 'CREATE TABLE x (id int PRIMARY KEY, v text, b bytea, j jsonb, n numeric); CREATE TABLE other (id int PRIMARY KEY)';
const fill = (from: number, to: number, tag = 'src'): string =>
  `INSERT INTO x SELECT g, '${tag} ' || g || E'\\t\\\\ \\n ü', decode(md5(g::text), 'hex'), jsonb_build_object('g', g), g / 7.0
     FROM generate_series(${from}, ${to}) g`;

/** a -> b over x (and other), with no initial copy: the clones under test are the only ones. */
const oneWayJob = (t: TeardownTest): Promise<Job> =>
  makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x] }\n    copy_data: never',
  });

t.test('repl.clone checks its arguments in the calling session and queues what it is asked', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public.x] }\n    copy_data: never',
  });
  await setUp(job);
  const bad: [string, RegExp][] = [
    ['', /name a sync/],
    [`sync => 'nope'`, /unknown sync "nope" \(syncs: s\)/],
    [`sync => 's', tables => '{public.other}'`, /table public\.other is not in sync "s"/],
    [`tables => '{x}'`, /tables without a sync need dbs/],
    [`tables => '{x}', dbs => 'a:target,b:target'`, /dbs names no source/],
    [`tables => '{x}', dbs => 'a:source,zz:target'`, /unknown database "zz" \(databases: a, b, c\)/],
    [`tables => '{x}', dbs => 'a,b:target'`, /dbs entry "a" needs a role/],
    [`tables => '{x}', dbs => 'a:source,b:master'`, /role must be source or target, not "master"/],
    [`tables => '{x}', dbs => 'a:source'`, /nothing receives the copy/],
    [`tables => '{x}', dbs => 'a:source,a:target'`, /database "a" is named twice/],
    [`tables => '{a.b.c.d}', dbs => 'a:source,b:target'`, /bad table name "a\.b\.c\.d"/],
    [`tables => '{}', dbs => 'a:source,b:target'`, /tables is empty/],
    [`sync => 's', start => '-1 hour'`, /start must be a positive interval/],
  ];
  for (const [args, re] of bad) await t.rejects(queue(job, args), re, `repl.clone(${args})`);
  await t.rejects(sql(job.cfg.metadata, 'SELECT repl.clone_cancel(424242)'), /no clone 424242/);
  t.equal(await count(job.cfg.metadata, 'repl.clone'), 0, 'nothing was queued by the bad calls');

  const bySync = await queue(job, `sync => 's'`);
  const subset = await queue(job, `sync => 's', tables => '{public.x}'`);
  const explicit = await queue(job, `tables => ARRAY['x', '"public"."other"'], dbs => 'c:source, a:target'`);
  const later = await queue(job, `sync => 's', start => '3 hours', only_empty => true, drop_indexes => true`);
  const rows = await sql(
    job.cfg.metadata,
    `SELECT id::int, sync, tables, dbs, only_empty, drop_indexes, state, startwhen > now() + interval '2 hours 59 minutes' AS later,
            (SELECT array_agg(target ORDER BY target) FROM repl.clone_table ct WHERE ct.clone_id = c.id) AS receivers
       FROM repl.clone c ORDER BY id`,
  );
  t.same(rows, [
    {
      id: bySync,
      sync: 's',
      tables: [{ schema: 'public', table: 'x' }],
      dbs: [
        { db: 'a', role: 'source' },
        { db: 'b', role: 'target' },
        { db: 'c', role: 'target' },
      ],
      only_empty: false,
      drop_indexes: false,
      state: 'queued',
      later: false,
      receivers: ['b', 'c'],
    },
    {
      id: subset,
      sync: 's',
      tables: [{ schema: 'public', table: 'x' }],
      dbs: [
        { db: 'a', role: 'source' },
        { db: 'b', role: 'target' },
        { db: 'c', role: 'target' },
      ],
      only_empty: false,
      drop_indexes: false,
      state: 'queued',
      later: false,
      receivers: ['b', 'c'],
    },
    {
      id: explicit,
      sync: null,
      tables: [
        { schema: 'public', table: 'x' },
        { schema: 'public', table: 'other' },
      ],
      dbs: [
        { db: 'c', role: 'source' },
        { db: 'a', role: 'target' },
      ],
      only_empty: false,
      drop_indexes: false,
      state: 'queued',
      later: false,
      receivers: ['a', 'a'],
    },
    {
      id: later,
      sync: 's',
      tables: [{ schema: 'public', table: 'x' }],
      dbs: [
        { db: 'a', role: 'source' },
        { db: 'b', role: 'target' },
        { db: 'c', role: 'target' },
      ],
      only_empty: true,
      drop_indexes: true,
      state: 'queued',
      later: true,
      receivers: ['b', 'c'],
    },
  ]);
  t.equal((await sql(job.cfg.metadata, 'SELECT repl.clone_cancel($1) AS s', [later]))[0]!.s, 'cancelled', 'a queued clone is cancelled at once');
  await t.rejects(sql(job.cfg.metadata, 'SELECT repl.clone_cancel($1)', [later]), /has already ended \(cancelled\)/);
});

t.test('a clone by sync empties every target and fills it from one read of the source', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public.x] }\n    copy_data: never',
  });
  await sql(job.urls.a!, `${fill(1, 5000)}; ANALYZE x`);
  await sql(job.urls.b!, fill(4000, 9000, 'stale'));
  await sql(job.urls.c!, `CREATE INDEX x_v ON x (v); ${fill(1, 10, 'stale')}`);
  await setUp(job);
  const daemon = startDaemon(t, job, { cloneCheckMs: 60_000 }); // only the NOTIFY can wake it in time
  const scans = async (): Promise<number> =>
    Number((await sql(job.urls.a!, `SELECT pg_stat_clear_snapshot(), seq_scan FROM pg_stat_user_tables WHERE relname = 'x'`))[0]!.seq_scan);
  const before = await scans();
  const id = await queue(job, `sync => 's', drop_indexes => true`);
  const row = await waitEnded(job, id, 20_000);
  t.equal(row.state, 'done');
  t.equal(row.error, null);
  t.ok(row.started && row.ended && row.ended >= row.started, 'started and ended are recorded');
  // A backend's scans reach the statistics when it flushes them, at the
  // latest on exit, before it leaves pg_stat_activity: once the daemon's
  // connections to a are gone, every scan it made there is counted.
  await daemon.stop();
  await waitFor(async () => (await clientsOn(job.urls.a!)) === 0, { what: "the daemon's connections to a to close" });
  // Before PostgreSQL 15 the counts travel through the statistics collector, which gets them a moment after the exit.
  await waitFor(async () => (await scans()) > before, { what: 'the scans to be counted' });
  t.equal((await scans()) - before, 1, 'the source table was read once for both targets');
  for (const n of ['b', 'c']) t.equal(await digest(job.urls[n]!, 'x'), await digest(job.urls.a!, 'x'), `${n} is identical to a`);
  const states = await tableStates(job, id);
  t.same(states, { 'x@b': { state: 'done', rows: 5000, note: null }, 'x@c': { state: 'done', rows: 5000, note: null } }, 'per-table progress');
  const est = await sql(job.cfg.metadata, 'SELECT est_rows::int, bytes > 0 AS bytes FROM repl.clone_table WHERE clone_id = $1', [id]);
  t.same(
    est,
    [
      { est_rows: 5000, bytes: true },
      { est_rows: 5000, bytes: true },
    ],
    'the source estimate and the bytes copied',
  );
  t.same(
    await sql(job.urls.c!, `SELECT indexrelid::regclass::text AS i, indisvalid FROM pg_index WHERE indrelid = 'x'::regclass ORDER BY 1`),
    [
      { i: 'x_pkey', indisvalid: true },
      { i: 'x_v', indisvalid: true },
    ],
    'the index dropped for the copy is back',
  );
  t.ok((await sql(job.urls.b!, `SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'x'`))[0]!.last_analyze, 'the target was analyzed');
  t.equal(await count(job.urls.b!, 'repl.delta'), 0, 'the clone was not captured on the target');
});

t.test('only_empty skips targets with rows; start delays a clone; due clones run in order', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public.x] }\n    copy_data: never',
  });
  await sql(job.urls.a!, fill(1, 300));
  await sql(job.urls.b!, fill(1, 3, 'mine'));
  await setUp(job);
  startDaemon(t, job, { cloneCheckMs: 60_000 });
  const delayed = await queue(job, `sync => 's', start => '1 hour'`);
  const soon = await queue(job, `sync => 's', start => '1 second', only_empty => true`);
  t.equal((await waitEnded(job, soon, 20_000)).state, 'done', 'a clone due in a second ran without another wake-up');
  t.equal(await count(job.urls.b!, 'x'), 3, 'b had rows: left as it was');
  t.equal(await digest(job.urls.c!, 'x'), await digest(job.urls.a!, 'x'), 'c was empty: filled');
  const states = await tableStates(job, soon);
  t.same(states['x@b'], { state: 'skipped', rows: 0, note: 'not empty' });
  t.equal((await cloneRow(job, delayed)).state, 'queued', 'the clone due in an hour waits');
  const v = await withClient(job.cfg.metadata, (c) => readClone(c, soon));
  t.match(summaryLine(v), /^clone \d+ done: 1 table\(s\), 300 rows, [\d.]+ MB in [\d.]+s \([\d.]+ MB\/s\); 1 skipped \(target not empty\)$/);
});

t.test('with several sources, each copies to the others and to the targets, and only targets are emptied', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.other] }\n    copy_data: never',
  });
  await sql(job.urls.a!, fill(1, 100, 'a'));
  await sql(job.urls.b!, fill(1001, 1100, 'b'));
  await sql(job.urls.c!, fill(5000, 5010, 'stale'));
  await setUp(job);
  startDaemon(t, job);
  const id = await queue(job, `tables => '{x}', dbs => 'a:source,b:source,c:target'`);
  t.equal((await waitEnded(job, id)).state, 'done');
  await waitSame(job, 'x', ['a', 'b', 'c']);
  t.same(
    await sql(job.urls.c!, 'SELECT count(*)::int AS n, min(id), max(id) FROM x'),
    [{ n: 200, min: 1, max: 1100 }],
    "c holds both sources' rows, its own are gone",
  );
});

t.test('a table that fails leaves every receiver as it was; tables before it stay copied', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2!, c: c3! },
    schema: xSchema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b, c]\n    tables: { include: [public.x, public.other] }\n    copy_data: never',
  });
  await sql(job.urls.a!, `${fill(1, 5000)}; UPDATE x SET v = 'poison' WHERE id = 2500; INSERT INTO other SELECT generate_series(1, 50)`);
  await sql(job.urls.b!, fill(1, 10, 'before'));
  await sql(job.urls.c!, `${fill(1, 10, 'before')}; ALTER TABLE x ADD CONSTRAINT no_poison CHECK (v <> 'poison')`);
  await setUp(job);
  const beforeB = await digest(job.urls.b!, 'x');
  const beforeC = await digest(job.urls.c!, 'x');
  startDaemon(t, job);
  const id = await queue(job, `sync => 's'`);
  const row = await waitEnded(job, id);
  t.equal(row.state, 'failed');
  t.match(row.error, /^table public\.x on c: .*no_poison/, 'the error names the table, the target and the cause');
  t.equal(await digest(job.urls.b!, 'x'), beforeB, 'b is as it was (the table fails as a whole)');
  t.equal(await digest(job.urls.c!, 'x'), beforeC, 'c is as it was');
  for (const n of ['b', 'c']) t.equal(await count(job.urls[n]!, 'other'), 50, `${n}: the table copied before stays copied`);
  t.match(
    formatStatus(await collectStatus(job.cfg, silentLogger)),
    new RegExp(`^clone ${id}: failed: table public\\.x`, 'm'),
    'capra status lists the failed clone',
  );
  const states = await tableStates(job, id);
  t.equal(states['x@c']!.state, 'failed');
  t.equal(states['other@b']!.state, 'done');
});

t.test('progress is readable from SQL while a clone runs; a cancel rolls the table back', async (t) => {
  const job = await oneWayJob(t);
  await sql(job.urls.a!, `${fill(1, 60_000)}; ANALYZE x`);
  await sql(job.urls.b!, `${stallAt(40_000)}; ${fill(1, 10, 'before')}`);
  await setUp(job);
  const before = await digest(job.urls.b!, 'x');
  const stall = await holdStall(job.urls.b!);
  t.teardown(() => stall.release());
  startDaemon(t, job);
  const id = await queue(job, `sync => 's'`);
  await waitFor(
    async () => {
      const r = await sql(job.cfg.metadata, `SELECT state, rows FROM repl.clone_table WHERE clone_id = $1`, [id]);
      return r[0]!.state === 'running' && Number(r[0]!.rows) > 0;
    },
    { what: 'progress rows while the copy runs' },
  );
  const v = await withClient(job.cfg.metadata, (c) => readClone(c, id));
  t.equal(v.state, 'running');
  t.equal(v.estRows, 60_000, 'the total to expect');
  t.ok(v.rows > 0 && v.rows < 60_000 * 1.01, `rows so far: ${v.rows}`);
  t.match(progressLine(v), /^clone \d+: \[[#.]{24}\] +\d+% {2}[\d,]+\/60,000 rows {2}[\d.]+ MB {2}[\d,]+ rows\/s( +ETA \S+)? {2}public\.x -> b$/);

  t.match(
    formatStatus(await collectStatus(job.cfg, silentLogger)),
    new RegExp(`^clone ${id}: \\[[#.]+\\] .* public\\.x -> b$`, 'm'),
    'capra status shows the running clone',
  );

  const cancel = await cli(['--config', job.configPath, 'clone', '--cancel', String(id)]);
  t.equal(cancel.code, 0, cancel.stderr);
  t.match(cancel.stdout, new RegExp(`clone ${id}: cancelling`));
  const row = await waitEnded(job, id, 20_000);
  t.equal(row.state, 'cancelled', 'cancelled while the COPY was still blocked (its statement was cancelled on the server)');
  t.equal(await digest(job.urls.b!, 'x'), before, 'b is as it was');
  t.equal((await tableStates(job, id))['x@b']!.state, 'cancelled');
});

// A table small enough that the source has sent all of it (its COPY is over
// on the server) while the stalled target holds the stream back: the
// cancelled clone must still end the source's transaction, or a TRUNCATE or
// ALTER of that table on the source would wait behind it for ever.
t.test('a clone cancelled after the source sent everything ends the source transaction', async (t) => {
  const job = await oneWayJob(t);
  await sql(job.urls.a!, fill(1, 3000));
  await sql(job.urls.b!, stallAt(1));
  await setUp(job);
  const stall = await holdStall(job.urls.b!);
  t.teardown(() => stall.release());
  startDaemon(t, job);
  const id = await queue(job, `sync => 's'`);
  const sourceCopyDone = async (): Promise<boolean> =>
    (await sql(job.urls.a!, `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE 'COPY %'`))
      .length === 1;
  await waitFor(sourceCopyDone, { what: 'the source to have sent the whole table' });
  await sql(job.cfg.metadata, 'SELECT repl.clone_cancel($1)', [id]);
  t.equal((await waitEnded(job, id, 20_000)).state, 'cancelled');
  await waitFor(async () => !(await sourceCopyDone()), { what: "the source's transaction to end", timeoutMs: 10_000 });
  await sql(job.urls.a!, `SET lock_timeout = '5s'; ALTER TABLE x ADD COLUMN later int`);
  t.same(
    await sql(job.urls.a!, `SELECT attname FROM pg_attribute WHERE attrelid = 'x'::regclass AND attname = 'later'`),
    [{ attname: 'later' }],
    'the table on the source could be altered again at once',
  );
});

// A stop can come at any instant, also while the source's COPY has been
// sent and not yet answered: the clone must still end (a ROLLBACK queued
// behind a COPY nobody reads would wait for ever) and leave nothing open.
t.test('a clone aborted at any instant ends, leaving the target as it was and no transaction open', async (t) => {
  const job = await oneWayJob(t);
  await sql(job.urls.b!, fill(1, 10, 'before'));
  await setUp(job);
  const before = await digest(job.urls.b!, 'x');
  const ended: string[] = [];
  for (const rows of [0, 20_000]) {
    await sql(job.urls.a!, `TRUNCATE x; ${fill(1, rows)}`);
    for (let ms = 0; ms < 10; ms++) {
      const conns = new Connections(job.cfg, 'capra-clone', silentLogger);
      try {
        await sql(job.cfg.metadata, `SELECT repl.clone(sync => 's')`);
        const req = (await conns.with(Connections.META, claimNextClone))!;
        const stop = new AbortController();
        const run = executeClone(conns, job.name, req, silentLogger, { signal: stop.signal }).then(
          (outcome) => outcome,
          () => 'stopped',
        );
        setTimeout(() => stop.abort(new Error('daemon stopping')), ms);
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([run, new Promise<string>((r) => (timer = setTimeout(() => r('hung'), 10_000)))]);
        clearTimeout(timer);
        ended.push(outcome);
        if (outcome === 'done') await sql(job.urls.b!, `TRUNCATE x; ${fill(1, 10, 'before')}`);
        await conns.with(Connections.META, (c) => finishClone(c, req.id, 'cancelled'));
      } finally {
        await conns.close();
      }
    }
  }
  t.notOk(ended.includes('hung'), `every clone ended (${ended.join(', ')})`);
  t.equal(await digest(job.urls.b!, 'x'), before, 'b is as it was');
  const open = async (): Promise<number> =>
    (
      await sql(
        job.urls.a!,
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`,
      )
    )[0]!.n;
  // Closed connections end their transactions as soon as the server notices.
  await waitFor(async () => (await open()) === 0, { what: 'no transaction left open on the source', timeoutMs: 10_000 });
  t.equal(await open(), 0, 'no transaction left open on the source');
});

t.test('a daemon stopped during a clone queues it again; the next one finishes it', async (t) => {
  const job = await oneWayJob(t);
  await sql(job.urls.a!, fill(1, 20_000));
  await sql(job.urls.b!, `${stallAt(10_000)}; ${fill(1, 10, 'before')}`);
  await setUp(job);
  const before = await digest(job.urls.b!, 'x');
  const stall = await holdStall(job.urls.b!);
  let released = false;
  t.teardown(async () => void (released || (await stall.release())));
  const first = startDaemon(t, job);
  const id = await queue(job, `sync => 's'`);
  await waitFor(async () => (await tableStates(job, id))['x@b']!.state === 'running', { what: 'the copy to start' });
  await first.stop();
  const row = await cloneRow(job, id);
  t.equal(row.state, 'queued', 'queued again');
  t.match(row.error, /interrupted/);
  const st = (await tableStates(job, id))['x@b']!;
  t.same([st.state, st.note], ['queued', 'interrupted: the daemon stopped'], 'its table is queued again too');
  t.equal(await digest(job.urls.b!, 'x'), before, 'b is as it was');
  await stall.release();
  released = true;
  startDaemon(t, job);
  t.equal((await waitEnded(job, id)).state, 'done');
  t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'));
});

t.test('a clone waits for the lane applying to the same target, and live writes are never lost', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: 'CREATE TABLE x (id int PRIMARY KEY, v int)',
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.x] }\n    copy_data: never',
  });
  await sql(job.urls.a!, 'INSERT INTO x SELECT g, 0 FROM generate_series(1, 20000) g');
  await setUp(job);
  startDaemon(t, job);
  await sql(job.urls.a!, 'UPDATE x SET v = 1 WHERE id = 1');
  await waitFor(async () => (await count(job.urls.b!, 'x')) === 1, { what: 'the lane to apply once' });

  // While a lane's transaction holds its position, the clone must not take its snapshot.
  await withClient(job.urls.b!, async (lane) => {
    await lane.query('BEGIN');
    await lane.query(`SELECT 1 FROM repl.applied WHERE sync = 's' FOR UPDATE`);
    const lanePid = (await lane.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const id = await queue(job, `sync => 's'`);
    await waitFor(async () => (await cloneRow(job, id)).state === 'running', { what: 'the clone to start' });
    // The session that waits for this lock is the clone's (nothing is written
    // to a meanwhile; only a poll could make the daemon's lane wait here too).
    await waitFor(async () => (await waitingFor(job.urls.b!, lanePid)) > 0, { what: "the clone to wait for the lane's lock" });
    t.equal((await tableStates(job, id))['x@b']!.state, 'queued', 'the clone waits for the lane');
    await lane.query('COMMIT');
    t.equal((await waitEnded(job, id)).state, 'done', 'and goes on once the lane is done');
  });

  // Writers keep changing the source while clones replace the target's table.
  let writing = true;
  let n = 20000;
  const writer = async (seed: number): Promise<void> => {
    let i = seed;
    while (writing) {
      i = (i * 7919 + 13) % 20000;
      await sql(
        job.urls.a!,
        `BEGIN; UPDATE x SET v = v + 1 WHERE id = $1; INSERT INTO x VALUES ($2, 0); DELETE FROM x WHERE id = $3; COMMIT`.replace(/\$(\d)/g, (_, k: string) =>
          String([i + 1, ++n, ((i * 31) % 20000) + 1][Number(k) - 1]),
        ),
      );
    }
  };
  const writers = [writer(1), writer(2)];
  for (let k = 0; k < 3; k++) t.equal((await waitEnded(job, await queue(job, `sync => 's'`))).state, 'done', `clone ${k + 1} during writes`);
  writing = false;
  await Promise.all(writers);
  await waitSame(job, 'x', ['a', 'b'], { timeoutMs: 60_000 });
  t.pass(`identical after ${n - 20000} write transactions during three clones`);
});

t.test('capra clone on the command line', async (t) => {
  const job = await oneWayJob(t);
  await sql(job.urls.a!, fill(1, 5000));
  await setUp(job);
  startDaemon(t, job);
  const ok = await cli(['--config', job.configPath, 'clone', '--sync', 's', '--wait']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /^clone (\d+) queued\nclone \1 done: 1 table\(s\), 5,000 rows, [\d.]+ MB in [\d.]+s \([\d.]+ MB\/s\)\n$/);
  t.equal(await digest(job.urls.b!, 'x'), await digest(job.urls.a!, 'x'));

  const queued = await cli(['--config', job.configPath, 'clone', '--tables', 'x', '--dbs', 'a:source,b:target', '--start', '1 day']);
  t.equal(queued.code, 0, queued.stderr);
  const id = /clone (\d+) queued/.exec(queued.stdout)![1]!;
  const list = await cli(['--config', job.configPath, 'clone', '--list']);
  t.match(list.stdout, new RegExp(`^${id}  queued +- +request`, 'm'));
  t.match(list.stdout, /done +s +request/);

  for (const [args, re] of [
    [['--sync', 'nope'], /^capra: repl\.clone: unknown sync "nope" \(syncs: s\)\n$/],
    [['--sync', 's', '--start', 'soon'], /^capra: option --start: invalid input syntax for type interval: "soon"\n$/],
    [['--cancel', '999999'], /^capra: repl\.clone_cancel: no clone 999999\n$/],
    [['--cancel', 'x'], /^capra: option --cancel: expected a clone id, got "x"\n$/],
    [['--sync', 's', '--sync', 's'], /^capra: clone takes one --sync/],
  ] as [string[], RegExp][]) {
    const r = await cli(['--config', job.configPath, 'clone', ...args]);
    t.not(r.code, 0, `clone ${args.join(' ')} fails`);
    t.match(r.stderr, re);
  }
});

t.test('clone helpers', async (t) => {
  t.same(splitList('x, public.y,"odd,name" ,'), ['x', 'public.y', '"odd,name"']);
  const v = {
    id: 7,
    state: 'running' as const,
    error: null,
    started: new Date(),
    ended: null,
    seconds: 10,
    rows: 250_000,
    bytes: 25 * 2 ** 20,
    estRows: 1_000_000,
    tables: [{ table: 'public.a', target: 'b', state: 'running', rows: 250_000, estRows: 1_000_000, note: null }],
  };
  t.equal(progressLine(v), 'clone 7: [######..................]  25%  250,000/1,000,000 rows  25.0 MB  25,000 rows/s  ETA 30s  public.a -> b');
  t.equal(progressLine({ ...v, estRows: null }), 'clone 7: 250,000 rows  25.0 MB  25,000 rows/s  public.a -> b');
});
