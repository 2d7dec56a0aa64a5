// The kick window is one setting (db/kick-timing.ts): install writes it into
// each table's capture function (row mode; the kick function in statement
// mode) through repl.make_capture / repl.make_kick / repl.refresh_kicks, and
// an install over the functions of before it became a parameter replaces them.
import t from 'tap';
import { installSide, uninstallSide } from '../orchestrator/src/db/schema-side.js';
import { KICK_WINDOW_MS, refreshKicks } from '../orchestrator/src/db/kick-timing.js';
import { addCaptureTriggers, defaultDdlOptions } from '../orchestrator/src/triggers/ddl.js';
import { registerConsumers, trackTable } from '../orchestrator/src/triggers/consumers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { freshDb, sql, testClusters, untilSentinel, withClient } from './harness/db.js';

const [c1] = testClusters().clusters;

const CLOCK = `format('repl.kick_clock_%s', 'k'::regclass::oid)::regclass`;

t.test('the kick window reaches each table capture function', async (t) => {
  const url = await freshDb(t, c1!, 'kickwin');
  await sql(url, 'CREATE TABLE k (id int PRIMARY KEY)');
  const table = { schema: 'public', table: 'k' };
  await withClient(url, async (c) => {
    await installSide(c, 'node', silentLogger);
    await registerConsumers(c, 'jobn', 's', ['target'], true);
    await addCaptureTriggers(c, table, ['id'], 'row', defaultDdlOptions, () => trackTable(c, 'jobn', 's', table, ['id']));
  });
  const body = async (): Promise<string> =>
    (await sql<{ src: string }>(url, `SELECT prosrc AS src FROM pg_proc WHERE proname = 'capture_' || 'k'::regclass::oid`))[0]!.src;
  t.match(await body(), `>= ${KICK_WINDOW_MS} THEN`, 'install wrote KICK_WINDOW_MS into the capture function');

  await withClient(url, async (listener) => {
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.channel));
    for (const ch of ['capra_jobn', 'sentinel']) await listener.query(`LISTEN ${ch}`);
    let id = 0;
    // Two writes, the table's kick clock moved back by twice the default window in between; how many kicks arrived.
    const kicksOfTwo = async (): Promise<number> => {
      heard.length = 0;
      await sql(url, `SELECT setval(${CLOCK}, 0)`);
      await sql(url, 'INSERT INTO k VALUES ($1)', [++id]);
      await sql(url, `SELECT setval(${CLOCK}, greatest(pg_sequence_last_value(${CLOCK}) - $1, 0))`, [2 * KICK_WINDOW_MS]);
      await sql(url, 'INSERT INTO k VALUES ($1)', [++id]);
      // Notifications arrive in commit order: once the sentinel is here, every kick is.
      await untilSentinel(url, listener, heard);
      return heard.filter((h) => h === 'capra_jobn').length;
    };
    t.equal(await kicksOfTwo(), 2, `two writes ${2 * KICK_WINDOW_MS} ms apart on the clock both kick`);
    await sql(url, 'SELECT repl.refresh_kicks(600000)');
    t.equal(await kicksOfTwo(), 1, 'with a ten-minute window, the second write does not kick');
    await withClient(url, refreshKicks);
    t.match(await body(), `>= ${KICK_WINDOW_MS} THEN`, 'refreshKicks puts KICK_WINDOW_MS back');
    t.equal(await kicksOfTwo(), 2, 'and both writes kick again');
  });

  for (const bad of [null, -1]) {
    await t.rejects(sql(url, `SELECT repl.make_kick('k'::regclass, $1)`, [bad]), {
      message: `repl.make_kick: the kick window must be 0 ms or more, not ${bad === null ? 'NULL' : bad}`,
    });
    await t.rejects(sql(url, `SELECT repl.make_capture('k'::regclass, '{id}', $1)`, [bad]), {
      message: `repl.make_capture: the kick window must be 0 ms or more, not ${bad === null ? 'NULL' : bad}`,
    });
  }
});

t.test('an install over the kick functions without the window parameter replaces them', async (t) => {
  const url = await freshDb(t, c1!, 'kickup');
  const signatures = async (): Promise<string[]> =>
    (
      await sql<{ f: string }>(
        url,
        `SELECT proname || '(' || pg_get_function_identity_arguments(oid) || ')' AS f FROM pg_proc
          WHERE pronamespace = 'repl'::regnamespace AND proname IN ('make_kick', 'refresh_kicks') ORDER BY 1`,
      )
    ).map((r) => r.f);
  await withClient(url, async (c) => {
    await installSide(c, 'node', silentLogger);
    // As an install from before the window was a parameter left them.
    await c.query(`DROP FUNCTION repl.refresh_kicks(integer); DROP FUNCTION repl.make_kick(regclass, integer);
      CREATE FUNCTION repl.make_kick(p_rel regclass) RETURNS text LANGUAGE sql AS $$ SELECT 'kick_' || p_rel::oid $$;
      CREATE FUNCTION repl.refresh_kicks() RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;`);
    await installSide(c, 'node', silentLogger);
  });
  t.same(await signatures(), ['make_kick(p_rel regclass, p_window_ms integer)', 'refresh_kicks(p_window_ms integer)'], 'only the new signatures are left');
  await withClient(url, (c) => uninstallSide(c, 'node'));
  t.same(await sql(url, `SELECT to_regnamespace('repl') AS s`), [{ s: null }], 'uninstall drops them and the schema');
});
