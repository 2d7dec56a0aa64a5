import type pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { type TableName, quoteIdent, quoteLiteral, quoteTable, tableLabel } from '../db/ident.js';
import { KICK_WINDOW_MS } from '../db/kick-timing.js';
import { backoffMs, sleep } from '../util/backoff.js';

/**
 * Capture triggers. They are shared by every job that captures a table on a
 * node, capture under every session_replication_role (so that an applier's
 * writes can cascade, and writes made under replica role by other tools are
 * not lost), and are put on or taken off in a short transaction under
 * lock_timeout, retried with backoff and jitter: DDL on a busy table must
 * never queue user traffic behind it for long.
 *
 * Row mode covers the roles with two row triggers on the same function:
 * capra_capture_row fires the ordinary way (origin and local role), and
 * capra_capture_replica only under replica role, WHEN the writer is not an
 * applier that does not cascade. Such an applier writes under replica role,
 * so it calls no trigger function per row: one ENABLE ALWAYS trigger that
 * returned at once cost a two-source apply a quarter of its time (840–940
 * against 600–730 ms a burst), and made an insert of 500,000 rows under
 * replica role take 1.6–1.9 s against 1.0 s (0.97 s with the WHEN's trigger).
 * The statement triggers (TRUNCATE, and statement mode's) fire ALWAYS.
 *
 * CREATE TRIGGER needs only the TRIGGER privilege, but ENABLE ALWAYS/REPLICA
 * and DROP TRIGGER need ownership of the table. A role that does not own it
 * leaves the triggers enabled the ordinary way, without capra_capture_replica
 * (enabled the ordinary way it would capture every write twice): they fire
 * except under replica role, so the applier then does not use replica role on
 * that node when it cascades (see markApplier). In row mode it removes them
 * by dropping the per-table functions they call, CASCADE.
 */
export type CaptureMode = 'statement' | 'row';

export const STATEMENT_TRIGGERS = ['capra_capture_ins', 'capra_capture_upd', 'capra_capture_del', 'capra_capture_trunc', 'capra_kick'];
/** Row mode kicks from its capture function (repl.make_capture); a kick trigger of its own cost writers 6 points of their TPS. */
export const ROW_TRIGGERS = ['capra_capture_row', 'capra_capture_replica', 'capra_capture_trunc'];

/**
 * capra_capture_replica's WHEN: every write under replica role but a
 * non-cascading applier's (the test repl.skip_capture() makes, inlined: WHEN
 * takes no subquery). The daemon's applier also sets capra.quiet (see
 * markApplier), read first, so its rows cost one setting's lookup rather
 * than two: a DELETE and a COPY of 100,000 rows under replica role took 299
 * against 319 ms (251 ms with no trigger; medians of 12 alternating rounds).
 * Anyone else who sets only capra.origin is still left out by the rest.
 */
export const REPLICA_WHEN = `current_setting('capra.quiet', true) IS DISTINCT FROM 'on'
  AND (coalesce(current_setting('capra.origin', true), '') = '' OR current_setting('capra.cascade', true) = 'on')`;
const ALL_TRIGGERS = [...new Set([...STATEMENT_TRIGGERS, ...ROW_TRIGGERS])];

/**
 * The triggers install makes in a mode, each with how it fires
 * (pg_trigger.tgenabled: O origin and local role, R replica role, A always).
 * Without ownership every trigger is left 'O', and capra_capture_replica out.
 */
export function installedTriggers(mode: CaptureMode, owner: boolean): Map<string, string> {
  if (mode === 'statement') return new Map(STATEMENT_TRIGGERS.map((n) => [n, owner ? 'A' : 'O']));
  if (!owner) return new Map(ROW_TRIGGERS.filter((n) => n !== 'capra_capture_replica').map((n) => [n, 'O']));
  return new Map([
    ['capra_capture_row', 'O'],
    ['capra_capture_replica', 'R'],
    ['capra_capture_trunc', 'A'],
  ]);
}

export interface DdlOptions {
  lockTimeoutMs: number;
  maxAttempts: number;
  signal?: AbortSignal;
  /** Called before each retry, for progress display. */
  onRetry?: (table: TableName, attempt: number, waitMs: number) => void;
  /**
   * Cancels a backend's statement (pg_cancel_backend over another
   * connection): on abort the DDL waiting for its lock is cancelled on the
   * server too, not left queued behind the lock holder.
   */
  cancelBackend?: (pid: number) => Promise<void>;
}

export const defaultCaptureMode: CaptureMode = 'row';

export const defaultDdlOptions: DdlOptions = { lockTimeoutMs: 2000, maxAttempts: 50 };

/**
 * The statements that put the triggers on. Row mode (the default) uses the
 * table's generated repl.capture_<oid>(), which also captures TRUNCATE and
 * kicks; statement mode the generic repl.capture_stmt() with transition
 * tables (cheaper for bulk statements, dearer for single-row ones: `npm run
 * bench`), and the generated repl.kick_<oid>() once per statement.
 */
function createStatements(t: TableName, keyCols: string[], mode: CaptureMode, fn: string, owner: boolean): string[] {
  const tbl = quoteTable(t);
  const args = keyCols.map(quoteLiteral).join(', ');
  const capture = `repl.${quoteIdent(fn)}()`;
  const stmts =
    mode === 'statement'
      ? [
          `CREATE TRIGGER capra_capture_ins AFTER INSERT ON ${tbl} REFERENCING NEW TABLE AS capra_new FOR EACH STATEMENT EXECUTE FUNCTION repl.capture_stmt(${args})`,
          `CREATE TRIGGER capra_capture_upd AFTER UPDATE ON ${tbl} REFERENCING OLD TABLE AS capra_old NEW TABLE AS capra_new FOR EACH STATEMENT EXECUTE FUNCTION repl.capture_stmt(${args})`,
          `CREATE TRIGGER capra_capture_del AFTER DELETE ON ${tbl} REFERENCING OLD TABLE AS capra_old FOR EACH STATEMENT EXECUTE FUNCTION repl.capture_stmt(${args})`,
        ]
      : [`CREATE TRIGGER capra_capture_row AFTER INSERT OR UPDATE OR DELETE ON ${tbl} FOR EACH ROW EXECUTE FUNCTION ${capture}`];
  if (mode === 'row' && owner) {
    stmts.push(
      `CREATE TRIGGER capra_capture_replica AFTER INSERT OR UPDATE OR DELETE ON ${tbl} FOR EACH ROW WHEN (${REPLICA_WHEN}) EXECUTE FUNCTION ${capture}`,
    );
  }
  const trunc = mode === 'statement' ? 'capture_stmt' : fn;
  stmts.push(`CREATE TRIGGER capra_capture_trunc AFTER TRUNCATE ON ${tbl} FOR EACH STATEMENT EXECUTE FUNCTION repl.${quoteIdent(trunc)}()`);
  if (mode === 'statement') {
    stmts.push(`CREATE TRIGGER capra_kick AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${tbl} FOR EACH STATEMENT EXECUTE FUNCTION repl.${quoteIdent(fn)}()`);
  }
  const how: Record<string, string> = { A: 'ALWAYS', R: 'REPLICA' };
  for (const [n, e] of installedTriggers(mode, owner)) if (how[e]) stmts.push(`ALTER TABLE ${tbl} ENABLE ${how[e]} TRIGGER ${quoteIdent(n)}`);
  return stmts;
}

/** The table's oid, and whether the current role owns it (directly or by membership: what ALTER and DROP TRIGGER check). */
async function tableAccess(client: pg.ClientBase, t: TableName): Promise<{ oid: number | null; owner: boolean }> {
  const r = await client.query<{ oid: number; owner: boolean }>(
    `SELECT c.oid::int AS oid, pg_has_role(c.relowner, 'USAGE') AS owner FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [quoteTable(t)],
  );
  return { oid: r.rows[0]?.oid ?? null, owner: r.rows[0]?.owner ?? false };
}

/** `GRANT <owner> TO <current role>`: what makes the current role count as the table's owner. */
async function ownershipGrant(client: pg.ClientBase, t: TableName): Promise<string> {
  const r = await client.query<{ owner: string; me: string }>(
    `SELECT pg_get_userbyid(relowner) AS owner, current_user AS me FROM pg_class WHERE oid = to_regclass($1)`,
    [quoteTable(t)],
  );
  const { owner, me } = r.rows[0] ?? { owner: 'the owner', me: 'this role' };
  return `needs ownership: GRANT ${quoteIdent(owner)} TO ${quoteIdent(me)}`;
}

/**
 * Takes the named capture triggers off: by DROP TRIGGER as the table's owner;
 * otherwise by dropping the per-table functions they call, CASCADE (dependent
 * objects are dropped without an ownership check). A trigger left after that
 * (statement mode, or one made by an older version on capture_stmt) can only
 * be dropped by the owner: say so.
 */
async function removeTriggers(client: pg.ClientBase, t: TableName, oid: number, owner: boolean, names: Iterable<string>): Promise<void> {
  const fns = `repl.${quoteIdent(`capture_${oid}`)}(), repl.${quoteIdent(`kick_${oid}`)}()`;
  const clock = `DROP SEQUENCE IF EXISTS repl.${quoteIdent(`kick_clock_${oid}`)}`;
  if (owner) {
    for (const n of names) await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(n)} ON ${quoteTable(t)}`);
    await client.query(`DROP FUNCTION IF EXISTS ${fns}`);
    await client.query(clock);
    return;
  }
  await client.query(`DROP FUNCTION IF EXISTS ${fns} CASCADE`);
  await client.query(clock);
  const left = await currentTriggers(client, t);
  if (left.size > 0) {
    throw new CapraError(
      `table ${tableLabel(t)}: this role does not own it, so it cannot drop its triggers ${[...left.keys()].join(', ')}; have the owner run DROP TRIGGER, or run this as the owner`,
    );
  }
}

interface LiveTrigger {
  args: string;
  enabled: string;
  /** Whether its WHEN, if any, reads capra.quiet (an older version's capra_capture_replica does not). */
  quiet: boolean;
}

/** The capture triggers a table has now, with their arguments and how they are enabled (pg_trigger.tgenabled). */
async function currentTriggers(client: pg.ClientBase, t: TableName): Promise<Map<string, LiveTrigger>> {
  const { rows } = await client.query<{ name: string; args: Buffer; enabled: string; quiet: boolean }>(
    `SELECT tgname AS name, tgargs AS args, tgenabled AS enabled, pg_get_triggerdef(oid) LIKE '%capra.quiet%' AS quiet FROM pg_trigger
      WHERE tgrelid = to_regclass($1) AND tgname = ANY ($2::text[])`,
    [quoteTable(t), ALL_TRIGGERS],
  );
  return new Map(rows.map((r) => [r.name, { args: r.args.toString('utf8'), enabled: r.enabled, quiet: r.quiet }]));
}

/** Runs fn in a transaction with a short lock_timeout, retrying when the lock is not granted. */
export async function withLockRetry(client: pg.ClientBase, t: TableName, opts: DdlOptions, fn: () => Promise<void>): Promise<void> {
  const pid = opts.cancelBackend ? ((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0) : 0;
  const onAbort = (): void => {
    if (pid) void opts.cancelBackend?.(pid).catch(() => {});
  };
  opts.signal?.addEventListener('abort', onAbort);
  try {
    await lockRetryLoop(client, t, opts, fn);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

async function lockRetryLoop(client: pg.ClientBase, t: TableName, opts: DdlOptions, fn: () => Promise<void>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (opts.signal?.aborted) throw new CapraError(`cancelled before taking the lock on ${tableLabel(t)}`);
    await client.query('BEGIN');
    try {
      await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${opts.lockTimeoutMs}ms`]);
      await fn();
      await client.query('COMMIT');
      return;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (opts.signal?.aborted) throw new CapraError(`cancelled while waiting for the lock on ${tableLabel(t)}`, { cause: err });
      if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
      if (attempt + 1 >= opts.maxAttempts) {
        throw new CapraError(
          `table ${tableLabel(t)}: could not get its lock in ${opts.maxAttempts} attempts (lock_timeout ${opts.lockTimeoutMs} ms): ${errorMessage(err)}; run the command again when the table is less busy`,
          { cause: err },
        );
      }
      const wait = backoffMs(attempt, 200, 5000);
      opts.onRetry?.(t, attempt + 1, wait);
      if (!(await sleep(wait, opts.signal))) throw new CapraError(`cancelled while waiting for the lock on ${tableLabel(t)}`);
    }
  }
}

/**
 * Puts the capture triggers on a table (unless they are already there with
 * the same key and mode) and, in the same transaction, runs `register`: the
 * caller records the table for its consumer there, so a sync run sees the
 * trigger and the registration together or neither. Returns whether the
 * triggers capture under every role ('always'), or only outside replica role
 * ('origin': this role does not own the table, so could not set how they fire).
 */
export async function addCaptureTriggers(
  client: pg.ClientBase,
  t: TableName,
  keyCols: string[],
  mode: CaptureMode,
  opts: DdlOptions,
  register: () => Promise<void>,
): Promise<'always' | 'origin'> {
  const argText = keyCols.map((k) => `${k}\0`).join('');
  let notOwner = false;
  await withLockRetry(client, t, opts, async () => {
    // Registered first, so the function generated below kicks this consumer too.
    await register();
    const { oid, owner } = await tableAccess(client, t);
    // Statement mode's triggers call the shared repl.capture_stmt(), so only DROP TRIGGER, which needs ownership, could take them off again.
    if (mode === 'statement' && !owner)
      throw new CapraError(
        `table ${tableLabel(t)}: ${await ownershipGrant(client, t)} for the statement capture mode (its triggers can only be dropped by the owner), or use the row mode`,
      );
    notOwner = !owner;
    let fn = await generateFunction(client, t, keyCols, mode);
    const have = await currentTriggers(client, t);
    // Row mode's key lives in the generated function (just replaced); statement mode's in the trigger arguments.
    // A trigger someone disabled, or (as the owner) one that fires for other roles than install makes it fire for, is made
    // again: capra validate --fix relies on it. A role that does not own the table could only make them fire the ordinary
    // way, so it keeps what the owner made (also an older version's ALWAYS trigger) unless that is broken.
    const same =
      (owner ? asInstalled(have, installedTriggers(mode, true)) : keptWithoutOwnership(have, mode)) &&
      (mode === 'row' || [...have].every(([n, h]) => n === 'capra_capture_trunc' || n === 'capra_kick' || h.args === argText));
    if (!same) {
      if (have.size > 0) {
        await removeTriggers(client, t, oid!, owner, have.keys());
        fn = await generateFunction(client, t, keyCols, mode);
      }
      for (const s of createStatements(t, keyCols, mode, fn, owner)) await client.query(s);
    }
  });
  return notOwner ? 'origin' : 'always';
}

/** Whether a table has exactly the wanted triggers, each firing as wanted, capra_capture_replica with today's WHEN. */
function asInstalled(have: Map<string, LiveTrigger>, wanted: Map<string, string>): boolean {
  return have.size === wanted.size && [...wanted].every(([n, e]) => have.get(n)?.enabled === e) && have.get('capra_capture_replica')?.quiet !== false;
}

/**
 * Whether a role that does not own the table keeps its triggers: the set of
 * one layout (with or without capra_capture_replica), none disabled, and no
 * write captured twice (capra_capture_replica firing for replica role only,
 * beside a capra_capture_row that does not).
 */
function keptWithoutOwnership(have: Map<string, { enabled: string }>, mode: CaptureMode): boolean {
  const names = (m: Map<string, unknown>): string => [...m.keys()].sort().join();
  const layout = [installedTriggers(mode, false), installedTriggers(mode, true)].some((m) => names(m) === names(have));
  const replica = have.get('capra_capture_replica');
  return (
    layout && [...have.values()].every((h) => h.enabled !== 'D') && (!replica || (replica.enabled === 'R' && have.get('capra_capture_row')?.enabled === 'O'))
  );
}

/** Creates or replaces the table's generated function, its capture function in row mode and its kick function in statement mode; returns its name. */
async function generateFunction(client: pg.ClientBase, t: TableName, keyCols: string[], mode: CaptureMode): Promise<string> {
  const r =
    mode === 'row'
      ? await client.query<{ fn: string }>('SELECT repl.make_capture(to_regclass($1), $2::text[], $3) AS fn', [quoteTable(t), keyCols, KICK_WINDOW_MS])
      : await client.query<{ fn: string }>('SELECT repl.make_kick(to_regclass($1), $2) AS fn', [quoteTable(t), KICK_WINDOW_MS]);
  return r.rows[0]!.fn;
}

/** Removes the capture triggers from a table, and its generated functions. */
export async function dropCaptureTriggers(client: pg.ClientBase, t: TableName, opts: DdlOptions, unregister?: () => Promise<void>): Promise<void> {
  await withLockRetry(client, t, opts, async () => {
    await unregister?.();
    const { oid, owner } = await tableAccess(client, t);
    if (oid == null) return;
    await removeTriggers(client, t, oid, owner, ALL_TRIGGERS);
  });
}
