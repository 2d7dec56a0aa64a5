import type pg from 'pg';

/**
 * The kick's timing, the one setting shared by the node's SQL and the daemon.
 *
 * NOTIFY serialises the commits of every notifying transaction on one
 * database-wide lock, held through the commit's WAL flush, so a table's kick
 * (in its capture function, repl.make_capture; in statement mode its kick
 * trigger, repl.make_kick) NOTIFYs at most once per KICK_WINDOW_MS for all
 * sessions together: a transaction whose writes to the table come within
 * the window after the last kick sends none. The daemon makes up for
 * those skipped kicks: after every kick it wakes the kicked source's workers
 * every KICK_LINGER_STEP_MS for KICK_LINGER_MS. A skipped transaction wrote
 * the table at most KICK_WINDOW_MS after the kick, but may commit later, so
 * the linger is the window plus KICK_COMMIT_SLACK_MS; a commit later still,
 * when nothing writes the table after it, waits for the safety-net poll
 * (poll_seconds).
 *
 * Install and add-triggers pass KICK_WINDOW_MS to repl.make_capture,
 * repl.make_kick and repl.refresh_kicks, which write it into each table's
 * capture or kick function; the
 * daemon reads the rest. Not configurable: a change here takes effect on
 * the next install.
 */

/** A table is kicked at most once per this many milliseconds. */
export const KICK_WINDOW_MS = 100;

/** How long after writing the table a skipped transaction's commit is still picked up by the linger. */
export const KICK_COMMIT_SLACK_MS = 150;

/** After a kick, how long the daemon keeps looking for the commits whose kick was skipped. */
export const KICK_LINGER_MS = KICK_WINDOW_MS + KICK_COMMIT_SLACK_MS;

/** How often it looks meanwhile: a skipped commit waits at most this long once it is visible. */
export const KICK_LINGER_STEP_MS = 25;

/**
 * A worker's runs that apply changes start at least this far apart (a run
 * that found nothing holds up no kick). Under load every kick and
 * every linger step found work, so a lane ran up to 40 times a second, and
 * each run's fixed part (its snapshot, the batch's bounds and tables, the
 * table metadata, a key scan and a row fetch per table, on the source,
 * beside the writers) was paid that often for a few rows. Kicks that come
 * meanwhile are taken by the next run; a kick after a quiet spell still runs
 * at once. Measured with pgbench at 4 clients, writers pinned apart from the
 * daemon (`npm run bench -- --only writers --quick`): with no gap the writers
 * kept 41% of their TPS with the daemon running and 70% with capture alone;
 * with 100 ms 56% and 73%; with 250 ms 62% and 62%, so beyond 250 ms the
 * daemon costs the writers nothing capture does not, and a change waits at
 * most this long more under load.
 */
export const RUN_GAP_MS = 250;

/**
 * Under heavy writes the gap grows: after each run that applied changes at
 * BUSY_CHANGES_PER_SECOND or more since the one before, the next waits
 * twice as long, up to RUN_GAP_MAX_MS; a run below that rate, or one that
 * finds nothing, brings it back to RUN_GAP_MS. Each run's fixed part costs
 * the writers on the source however few rows it carries: with pgbench at 64
 * clients, pinned, runs kicked at RUN_GAP_MS left the writers a median 8.5%
 * fewer TPS than runs polled once a second, and 1.1% with a gap of 1 s (8
 * paired rounds each, `npm run bench -- --only kick`, 2026-12-06). So a
 * change waits up to a second under such load, and no longer than before
 * under light writes: a single row after a quiet spell runs at once, and a
 * source writing less than this rate keeps runs RUN_GAP_MS apart.
 */
export const RUN_GAP_MAX_MS = 1_000;

/** Changes (delta rows) a second from which the sources count as busy (see RUN_GAP_MAX_MS). */
export const BUSY_CHANGES_PER_SECOND = 2_000;

/** Regenerates every table's kick function with the window (after install, and whenever consumers change). */
export async function refreshKicks(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT repl.refresh_kicks($1)', [KICK_WINDOW_MS]);
}
