// A pooled client checked out by a run, idle between two queries, when its
// server ends the session (shutdown, pg_terminate_backend): the daemon must
// not die of an unhandled 'error' event; the next query fails instead.
import t from 'tap';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { freshDb, sql, testClusters, waitFor } from './harness/db.js';

const [c1] = testClusters().clusters;

t.test('a checked-out client whose session is terminated while idle fails its next query, nothing more', async (t) => {
  const url = await freshDb(t, c1!, 'conn');
  const other = url.replace(/\/[^/]*$/, '/postgres');
  const cfg = parseConfigText(
    ['name: conn', 'databases:', `  a: ${url}`, `  b: ${other}`, 'syncs:', '  s: { sources: [a], targets: [b] }'].join('\n'),
    'inline.yml',
  );
  const conns = new Connections(cfg, 'capra-sync', silentLogger);
  t.teardown(() => conns.close());
  const client = await conns.connect('a');
  const pid = (await client.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
  await sql(other, 'SELECT pg_terminate_backend($1)', [pid]);
  await waitFor(async () => (await sql(other, 'SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, { what: 'the backend to exit' });
  // One more round trip elsewhere: by now the FATAL message has reached the idle client.
  await sql(other, 'SELECT 1');
  await t.rejects(client.query('SELECT 1'), 'its next query fails');
  client.release(true);
  const again = await conns.with('a', (c) => c.query<{ one: number }>('SELECT 1 AS one'));
  t.equal(again.rows[0]!.one, 1, 'the pool hands out a working client afterwards');
});
