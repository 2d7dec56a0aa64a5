// What the capture triggers record, in both modes: INSERT, UPDATE (a key
// change records old and new key), DELETE, TRUNCATE, composite keys; and
// nothing for an applier's session unless it cascades.
import t from 'tap';
import pg from 'pg';
import { addCaptureTriggers, defaultDdlOptions } from '../orchestrator/src/triggers/ddl.js';
import { installSide } from '../orchestrator/src/db/schema-side.js';
import { registerConsumers, trackTable, trackedTables } from '../orchestrator/src/triggers/consumers.js';
import { captureFaults } from '../orchestrator/src/validate/capture-check.js';
import { markApplier } from '../orchestrator/src/sync/applier-session.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { freshDb, sql, testClusters, untilSentinel, withClient } from './harness/db.js';

const [c1] = testClusters().clusters;

/**
 * How often a marked applier's insert into p called the capture function
 * (track_functions counts PL/pgSQL calls): marked by hand under `role`, or by
 * markApplier itself ('applier', which takes replica role as superuser).
 */
function captureCalls(url: string, role: 'origin' | 'replica' | 'applier', cascade: 'on' | 'off'): Promise<number> {
  return withClient(url, async (c) => {
    await c.query(`SET track_functions = 'pl'`);
    if (role !== 'applier') await c.query(`SET session_replication_role = ${role}`);
    await c.query('BEGIN');
    if (role === 'applier') await markApplier(c, 'job1', cascade === 'on', {});
    else await c.query(`SELECT set_config('capra.origin', 'job1', true), set_config('capra.cascade', $1, true)`, [cascade]);
    await c.query(`INSERT INTO p VALUES (7, $1, 'counted')`, [cascade]);
    const r = await c.query<{ n: number }>(`SELECT coalesce(sum(calls), 0)::int AS n FROM pg_stat_xact_user_functions WHERE funcname ~ '^capture_'`);
    await c.query('ROLLBACK');
    return r.rows[0]!.n;
  });
}

for (const mode of ['statement', 'row'] as const) {
  t.test(`${mode}-level capture`, async (t) => {
    const url = await freshDb(t, c1!, 'cap');
    await sql(url, 'CREATE TABLE p (a int, b text, v text, PRIMARY KEY (a, b))');
    await withClient(url, async (c) => {
      await installSide(c, 'node', silentLogger);
      await addCaptureTriggers(c, { schema: 'public', table: 'p' }, ['a', 'b'], mode, defaultDdlOptions, async () => {});
    });
    // Writes under replica role (another tool's, a cascading applier's) are captured as under origin role:
    // row mode by capra_capture_replica, which is skipped for an applier that does not cascade.
    for (const role of ['origin', 'replica'] as const) {
      const w = (stmt: string) => sql(url, `SET session_replication_role = ${role}; ${stmt}`);
      await sql(url, 'TRUNCATE p; DELETE FROM repl.delta');
      const deltas = async (): Promise<{ op: string; pk: unknown }[]> => {
        const rows = await sql<{ op: string; pk: unknown }>(url, 'SELECT op, pk FROM repl.delta ORDER BY txid, op, pk::text');
        await sql(url, 'DELETE FROM repl.delta');
        return rows;
      };
      await w(`INSERT INTO p VALUES (1, 'x', 'v1'), (2, 'y', 'v2')`);
      t.same(
        await deltas(),
        [
          { op: 'I', pk: { a: 1, b: 'x' } },
          { op: 'I', pk: { a: 2, b: 'y' } },
        ],
        `inserts (${role} role)`,
      );
      await w(`UPDATE p SET v = 'new' WHERE a = 1`);
      t.same(await deltas(), [{ op: 'U', pk: { a: 1, b: 'x' } }], `an update that keeps the key is recorded once (${role} role)`);
      await w(`UPDATE p SET b = 'z' WHERE a = 2`);
      t.same(
        await deltas(),
        [
          { op: 'U', pk: { a: 2, b: 'y' } },
          { op: 'U', pk: { a: 2, b: 'z' } },
        ],
        `a key change records old and new key (${role} role)`,
      );
      await w(`DELETE FROM p WHERE a = 1`);
      t.same(await deltas(), [{ op: 'D', pk: { a: 1, b: 'x' } }], `delete (${role} role)`);
      await w(`UPDATE p SET v = v WHERE false`);
      t.same(await deltas(), [], `a statement that changes no row records nothing (${role} role)`);
      await w(`TRUNCATE p`);
      t.same(await deltas(), [{ op: 'T', pk: null }], `truncate (${role} role)`);
      await w(`BEGIN; SET LOCAL capra.origin = 'job1'; INSERT INTO p VALUES (5, 'q', 'applied'); COMMIT`);
      t.same(await deltas(), [], `an applier's write is not captured (${role} role)`);
      await w(`BEGIN; SET LOCAL capra.origin = 'job1'; SET LOCAL capra.cascade = 'on'; INSERT INTO p VALUES (6, 'q', 'cascaded'); COMMIT`);
      t.same(
        await sql(url, 'SELECT op, pk, origin FROM repl.delta'),
        [{ op: 'I', pk: { a: 6, b: 'q' }, origin: 'job1' }],
        `with cascade it is captured, marked with its origin (${role} role)`,
      );
      if (mode === 'row') {
        t.equal(await captureCalls(url, role, 'on'), 1, `a cascading applier's row calls the capture function once (${role} role)`);
        t.equal(
          await captureCalls(url, role, 'off'),
          role === 'replica' ? 0 : 1,
          `a non-cascading applier's row ${role === 'replica' ? 'calls no trigger function under replica role' : 'calls it, and it returns at once (origin role)'}`,
        );
      }
    }
    if (mode === 'row') {
      // The daemon's own marks (which also set capra.quiet, read first by the WHEN, and replica role).
      t.equal(await captureCalls(url, 'applier', 'on'), 1, 'an applier marked by markApplier that cascades: one call per row');
      t.equal(await captureCalls(url, 'applier', 'off'), 0, 'an applier marked by markApplier that does not cascade: no call');
    }
    const enabled = await sql<{ tgname: string; tgenabled: string }>(url, `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'p'::regclass ORDER BY 1`);
    t.same(
      enabled,
      mode === 'row'
        ? [
            { tgname: 'capra_capture_replica', tgenabled: 'R' },
            { tgname: 'capra_capture_row', tgenabled: 'O' },
            { tgname: 'capra_capture_trunc', tgenabled: 'A' },
          ]
        : ['capra_capture_del', 'capra_capture_ins', 'capra_capture_trunc', 'capra_capture_upd', 'capra_kick'].map((tgname) => ({ tgname, tgenabled: 'A' })),
      `${mode} mode's triggers, and the roles they fire for (row mode kicks from its capture function)`,
    );
  });
}

for (const mode of ['row', 'statement'] as const) {
  t.test(`${mode} mode's kicks: each job with notify on its own channel, none for cron jobs or for its own applied writes`, async (t) => {
    const url = await freshDb(t, c1!, 'kick');
    await sql(url, 'CREATE TABLE k (id int PRIMARY KEY)');
    const table = { schema: 'public', table: 'k' };
    await withClient(url, async (c) => {
      await installSide(c, 'node', silentLogger);
      for (const [job, kick] of [
        ['jobn', true],
        ['jobm', true],
        ['jobc', false],
      ] as const) {
        await registerConsumers(c, job, 's', ['target'], kick);
        await addCaptureTriggers(c, table, ['id'], mode, defaultDdlOptions, () => trackTable(c, job, 's', table, ['id']));
      }
    });
    await withClient(url, async (listener) => {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.channel));
      for (const ch of ['capra_jobn', 'capra_jobm', 'capra_jobc', 'sentinel']) await listener.query(`LISTEN ${ch}`);
      // Notifications reach a listener in commit order: once a sentinel sent
      // after the statement has arrived, everything the statement sent has too.
      // A table is kicked at most once per 100 ms by all sessions together: wind its kick clock back before each statement.
      const collect = async (stmt: string): Promise<string[]> => {
        heard.length = 0;
        await sql(url, `SELECT setval(format('repl.kick_clock_%s', 'k'::regclass::oid), 0)`);
        await sql(url, stmt);
        await untilSentinel(url, listener, heard);
        return heard.filter((h) => h !== 'sentinel').sort();
      };
      t.same(await collect('INSERT INTO k VALUES (1)'), ['capra_jobm', 'capra_jobn'], 'notify jobs are kicked, the cron job is not');
      t.same(
        await collect(`BEGIN; SET LOCAL capra.origin = 'jobn'; SET LOCAL capra.cascade = 'on'; INSERT INTO k VALUES (2); COMMIT`),
        ['capra_jobm'],
        "a job's own applied (cascaded) write kicks only the other job",
      );
      t.same(await collect(`BEGIN; SET LOCAL capra.origin = 'jobn'; INSERT INTO k VALUES (3); COMMIT`), [], 'a non-cascading applied write kicks nobody');
      // Not wound back: of two sessions writing within 100 ms, only the first kicks.
      const twoWriters = async (): Promise<{ kicks: string[]; ms: number }> => {
        await sql(url, `SELECT setval(format('repl.kick_clock_%s', 'k'::regclass::oid), 0)`);
        const [w1, w2] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
        await Promise.all([w1.connect(), w2.connect()]);
        try {
          heard.length = 0;
          const t0 = Date.now();
          await w1.query('INSERT INTO k SELECT coalesce(max(id), 0) + 1 FROM k');
          await w2.query('INSERT INTO k SELECT coalesce(max(id), 0) + 1 FROM k');
          const ms = Date.now() - t0;
          await untilSentinel(url, listener, heard);
          return { kicks: heard.filter((h) => h !== 'sentinel').sort(), ms };
        } finally {
          await Promise.all([w1.end(), w2.end()]);
        }
      };
      let two = await twoWriters();
      for (let i = 0; i < 5 && two.ms >= 100; i++) two = await twoWriters();
      t.ok(two.ms < 100, `the two writes were within 100 ms (${two.ms} ms)`);
      t.same(two.kicks, ['capra_jobm', 'capra_jobn'], 'the table is kicked once for two sessions writing within 100 ms');
      await withClient(url, (c) => registerConsumers(c, 'jobm', 's', ['target'], false));
      t.same(await collect('INSERT INTO k VALUES (40)'), ['capra_jobn'], 'switching a job to cron kicks takes it out at once');
    });
  });
}

t.test("a role that lost the table's ownership keeps the triggers it made as its owner, an older version's ALWAYS trigger too", async (t) => {
  const url = await freshDb(t, c1!, 'capown');
  const role = `capra_own_${url.slice(-12)}`;
  await sql(url, `CREATE ROLE ${role}`);
  t.teardown(() => sql(url, `DROP OWNED BY ${role}; DROP ROLE ${role}`).catch(() => {}));
  await sql(url, 'CREATE TABLE o (id int PRIMARY KEY)');
  await withClient(url, (c) => installSide(c, 'node', silentLogger));
  await sql(url, `GRANT USAGE, CREATE ON SCHEMA repl TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA repl TO ${role}; ALTER TABLE o OWNER TO ${role}`);
  const add = (): Promise<'always' | 'origin'> =>
    withClient(url, async (c) => {
      await c.query(`SET ROLE ${role}`);
      return addCaptureTriggers(c, { schema: 'public', table: 'o' }, ['id'], 'row', defaultDdlOptions, async () => {});
    });
  t.equal(await add(), 'always', 'as the owner: the pair and the ALWAYS truncate trigger');
  // As an older version made them: one ALWAYS row trigger. Then the table is given to another owner.
  await sql(url, `DROP TRIGGER capra_capture_replica ON o; ALTER TABLE o ENABLE ALWAYS TRIGGER capra_capture_row; ALTER TABLE o OWNER TO CURRENT_USER`);
  t.equal(await add(), 'origin', 'add-triggers again, no longer the owner');
  t.same(
    await sql(url, `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'o'::regclass ORDER BY 1`),
    [
      { tgname: 'capra_capture_row', tgenabled: 'A' },
      { tgname: 'capra_capture_trunc', tgenabled: 'A' },
    ],
    'the ALWAYS triggers are kept, not made again the ordinary way (which would not fire under replica role)',
  );
});

t.test("add-triggers as the owner replaces an older version's capra_capture_replica, whose WHEN does not read capra.quiet", async (t) => {
  const url = await freshDb(t, c1!, 'capquiet');
  await sql(url, 'CREATE TABLE p (a int, b text, v text, PRIMARY KEY (a, b))');
  const add = (): Promise<unknown> =>
    withClient(url, async (c) => {
      await installSide(c, 'node', silentLogger);
      await addCaptureTriggers(c, { schema: 'public', table: 'p' }, ['a', 'b'], 'row', defaultDdlOptions, async () => {});
    });
  const readsQuiet = async (): Promise<boolean> =>
    (await sql<{ q: boolean }>(url, `SELECT pg_get_triggerdef(oid) LIKE '%capra.quiet%' AS q FROM pg_trigger WHERE tgname = 'capra_capture_replica'`))[0]!.q;
  await add();
  t.equal(await readsQuiet(), true, "today's WHEN reads capra.quiet");
  const fn = (await sql<{ fn: string }>(url, `SELECT tgfoid::regproc::text AS fn FROM pg_trigger WHERE tgname = 'capra_capture_replica'`))[0]!.fn;
  await sql(
    url,
    `DROP TRIGGER capra_capture_replica ON p;
     CREATE TRIGGER capra_capture_replica AFTER INSERT OR UPDATE OR DELETE ON p FOR EACH ROW
       WHEN (coalesce(current_setting('capra.origin', true), '') = '' OR current_setting('capra.cascade', true) = 'on') EXECUTE FUNCTION ${fn}();
     ALTER TABLE p ENABLE REPLICA TRIGGER capra_capture_replica`,
  );
  t.equal(await readsQuiet(), false, 'as an older version made it, the WHEN does not');
  t.equal(await captureCalls(url, 'applier', 'off'), 0, 'the older WHEN leaves out a non-cascading applier too');
  await add();
  t.equal(await readsQuiet(), true, 'add-triggers made it again with the WHEN that reads capra.quiet');
  t.equal(await captureCalls(url, 'applier', 'off'), 0, 'a non-cascading applier calls no trigger function');
  t.equal(await captureCalls(url, 'applier', 'on'), 1, 'a cascading one calls it once');
  await sql(url, `SET session_replication_role = replica; INSERT INTO p VALUES (8, 'r', 'other tool')`);
  t.same(await sql(url, 'SELECT op, pk FROM repl.delta'), [{ op: 'I', pk: { a: 8, b: 'r' } }], "another tool's write under replica role is captured");
});

t.test('an install over an older node side regenerates the capture functions, empties old kick triggers, drops the op CHECK', async (t) => {
  const url = await freshDb(t, c1!, 'capup');
  for (const tbl of ['u', 'w', 'x']) await sql(url, `CREATE TABLE ${tbl} (id int PRIMARY KEY, k2 int UNIQUE, v text)`);
  await withClient(url, async (c) => {
    await installSide(c, 'node', silentLogger);
    await registerConsumers(c, 'job1', 's', ['target'], true);
    await registerConsumers(c, 'job2', 's', ['target'], true);
    for (const tbl of ['u', 'w', 'x']) {
      const table = { schema: 'public', table: tbl };
      await addCaptureTriggers(c, table, ['id'], 'row', defaultDdlOptions, () => trackTable(c, 'job1', 's', table, ['id']));
    }
    // w's and x's second consumer was registered with another key: which one the function should write is for validate to say.
    for (const tbl of ['w', 'x']) await trackTable(c, 'job2', 's', { schema: 'public', table: tbl }, ['k2']);
  });
  const src = async (fn: string, tbl: string): Promise<string | undefined> =>
    (await sql<{ src: string }>(url, `SELECT prosrc AS src FROM pg_proc WHERE proname = $1 || $2::regclass::oid`, [fn, tbl]))[0]?.src;
  const generated = { u: await src('capture_', 'u') };
  t.match(generated.u, "PERFORM pg_notify('capra_job1', '')", 'the capture function kicks');
  // As an older version left u and w: its own body (marked here) without the key as its comment, a kick trigger of
  // its own on u, the CHECK on op, the migration that dropped it not recorded. x's function names its key.
  for (const tbl of ['u', 'w', 'x']) {
    await sql(
      url,
      `DO $$BEGIN EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', 'capture_' || '${tbl}'::regclass::oid,
         replace((SELECT prosrc FROM pg_proc WHERE proname = 'capture_' || '${tbl}'::regclass::oid), 'BEGIN', E'BEGIN\n  -- older body')); END$$`,
    );
    if (tbl !== 'x') await sql(url, `DO $$BEGIN EXECUTE format('COMMENT ON FUNCTION repl.%I() IS NULL', 'capture_' || '${tbl}'::regclass::oid); END$$`);
  }
  await sql(
    url,
    `DO $$BEGIN
       EXECUTE format('CREATE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', 'kick_' || 'u'::regclass::oid, 'BEGIN PERFORM pg_notify(''capra_job1'', ''''); RETURN NULL; END');
       EXECUTE format('CREATE TRIGGER capra_kick AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON u FOR EACH STATEMENT EXECUTE FUNCTION repl.%I()', 'kick_' || 'u'::regclass::oid);
     END$$`,
  );
  // And u's row trigger as it was: enabled always, without capra_capture_replica beside it.
  await sql(url, 'DROP TRIGGER capra_capture_replica ON u; ALTER TABLE u ENABLE ALWAYS TRIGGER capra_capture_row');
  await sql(url, `ALTER TABLE repl.delta ADD CONSTRAINT delta_op_check CHECK (op IN ('I', 'U', 'D', 'T'))`);
  await sql(url, `DELETE FROM repl.node_migrations WHERE name = 'any_op'`);
  t.match(await src('capture_', 'u'), '-- older body', 'the older body is in place');

  await withClient(url, (c) => installSide(c, 'node', silentLogger));
  t.equal(await src('capture_', 'u'), generated.u, "u's capture function is the one this version generates again, with the key it is registered with");
  const x = (await src('capture_', 'x'))!;
  t.notMatch(x, '-- older body', "x's is written again too, though its consumers disagree on its key");
  t.match(x, "jsonb_build_object('id', NEW.id)", 'with the key its comment names');
  t.match(x, "PERFORM pg_notify('capra_job2', '')", 'and the kicks of now (job2 was registered on x after it was made)');
  t.match(await src('capture_', 'w'), '-- older body', 'w, without the comment and with consumers that disagree on its key, is left as it was');
  t.equal(await src('kick_', 'u'), 'BEGIN RETURN NULL; END', "u's old kick trigger calls an empty function: no kick is sent twice");
  t.same(await sql(url, `SELECT conname FROM pg_constraint WHERE conrelid = 'repl.delta'::regclass AND contype = 'c'`), [], 'the CHECK on op is gone');
  await sql(url, `INSERT INTO u VALUES (1, 1, 'a')`);
  await sql(url, `UPDATE u SET v = 'b' WHERE id = 1`);
  t.same(
    await sql(url, `SELECT op, pk FROM repl.delta WHERE relid = 'u'::regclass ORDER BY op`),
    [
      { op: 'I', pk: { id: 1 } },
      { op: 'U', pk: { id: 1 } },
    ],
    'and it captures',
  );
  const uTable = { schema: 'public', table: 'u', keyCols: ['id'] };
  await withClient(url, async (c) => {
    const faults = await captureFaults(c, [uTable], await trackedTables(c, 'job1', 's'));
    t.same(
      faults.map((f) => f.faults),
      [
        [
          'capture trigger capra_capture_row is from an older version (enabled always, so every applied row calls it; capra_capture_replica now captures under replica role)',
          'capture trigger capra_kick is left over from an older version (the capture function kicks now)',
        ],
      ],
      "validate's check names the old row trigger and the old kick trigger, and nothing else",
    );
    await addCaptureTriggers(c, uTable, ['id'], 'row', defaultDdlOptions, async () => {});
    t.same(await captureFaults(c, [uTable], await trackedTables(c, 'job1', 's')), [], 'add-triggers (what --fix runs) leaves nothing to name');
  });
  t.same(
    await sql(url, `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'u'::regclass ORDER BY 1`),
    [
      { tgname: 'capra_capture_replica', tgenabled: 'R' },
      { tgname: 'capra_capture_row', tgenabled: 'O' },
      { tgname: 'capra_capture_trunc', tgenabled: 'A' },
    ],
    "the kick trigger is off, and the row triggers are this version's",
  );
  t.equal(await src('kick_', 'u'), undefined, 'and its function dropped');
});
