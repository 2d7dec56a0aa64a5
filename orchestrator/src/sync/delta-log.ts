import type pg from 'pg';

/**
 * The delta-log protocol, as the daemon and the CLI speak it: one call per
 * SQL function of extension/node/040_changes.sql to 060_positions.sql, where
 * the protocol itself is written (what "the changes after a position" are,
 * a batch's bounds, pending counts, how positions are locked, stored and
 * confirmed). Nothing else in orchestrator/src reads repl.delta or writes a
 * position.
 *
 * Positions travel as the text of a pg_snapshot.
 */

/** One lane of a sync: (job, sync, source -> target). */
export interface LaneRef {
  job: string;
  sync: string;
  source: string;
  target: string;
}

/** Select-list items that pin, for the transaction, the output formats COPY text must be written in (see startBatch). */
export const PIN_OUTPUT_FORMATS = `set_config('datestyle', 'ISO', true), set_config('intervalstyle', 'postgres', true),
            set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)`;

/**
 * Prepares the source's transaction for reading a batch, in one statement:
 * the batch's bounds for repl.batch_changes (see batchChanges), and output
 * formats every server reads back exactly. COPY's text format is the
 * session's display format: a source database set to DateStyle 'SQL, DMY',
 * IntervalStyle sql_standard or a low extra_float_digits would write dates,
 * time zone abbreviations, intervals and floats that the target reads as
 * other values. Lasts until the transaction ends.
 */
export async function startBatch(source: pg.ClientBase, oldPosition: string, endPosition: string, job: string): Promise<void> {
  await source.query(`SELECT repl.start_batch($1, $2, $3), ${PIN_OUTPUT_FORMATS}`, [oldPosition, endPosition, job]);
}

/**
 * SQL for the FROM item of the current batch's changes to one table, aliased
 * `alias` (rows of repl.delta), for queries streamed by COPY (which take no
 * bind parameters: the bounds come from startBatch).
 */
export function batchChanges(relid: number, alias = 'd'): string {
  return `repl.batch_changes(ARRAY[${Number(relid)}]::oid[]) ${alias}`;
}

/** SQL for the FROM item of the changes after `$after` visible in `$upto`, not applied by job `$job` (placeholders as given), aliased `alias`. */
export function changesAfter(after: string, upto: string, job: string, alias = 'd'): string {
  return `repl.changes(${after}::pg_snapshot, ${upto}::pg_snapshot, ${job}) ${alias}`;
}

/** Where a batch may end, from the txids of the changes after a position (see batchEnd in snapshot.ts). */
export interface BatchCut {
  /** The first change's txid; null when there is none. */
  first: bigint | null;
  /** The txid of the change just past `limit` changes; null when there are no more than `limit`. */
  past: bigint | null;
}

/**
 * Where a batch of at most `limit` of the changes after `after` up to `upto`
 * to `relids` may end (repl.batch_cut, which reads the log in its txid
 * index's order, up to the limit): the first change's txid, and the one just
 * past the limit.
 */
export async function batchCut(source: pg.ClientBase, after: string, upto: string, job: string, relids: number[], limit: number): Promise<BatchCut> {
  const r = await source.query<{ first: string | null; past: string | null }>('SELECT first::text, past::text FROM repl.batch_cut($1, $2, $3, $4::oid[], $5)', [
    after,
    upto,
    job,
    relids,
    limit,
  ]);
  const { first, past } = r.rows[0]!;
  return { first: first === null ? null : BigInt(first), past: past === null ? null : BigInt(past) };
}

export interface BatchTable {
  relid: number;
  /** The batch holds a TRUNCATE of it. */
  truncated: boolean;
  /** The batch holds keys of it (an insert, update or delete). */
  keyed: boolean;
  /** Delta rows. */
  rows: number;
}

/**
 * The rows of `select`, a query over the current batch's changes to
 * `relids` (`from` gives its FROM item), grouped by hashing with sorts off
 * for it: the planner, which takes a batch for a handful of changes, would
 * sort them all (by table, 45 ms for 100,000 changes, spilled to disk,
 * against 30 ms). One round trip: the relids are numbers, written into the
 * text, so the three statements go as one simple query.
 */
async function hashedOverBatch<T extends pg.QueryResultRow>(source: pg.ClientBase, relids: number[], select: (from: string) => string): Promise<T[]> {
  const from = `repl.batch_changes(ARRAY[${relids.map(Number).join(', ')}]::oid[]) d`;
  const results = (await source.query(`SET LOCAL enable_sort = off; ${select(from)}; RESET enable_sort`)) as unknown as pg.QueryResult<T>[];
  return results[1]!.rows;
}

/** What the current batch (startBatch) holds, per table among `relids`. */
export async function batchTables(source: pg.ClientBase, relids: number[]): Promise<BatchTable[]> {
  const rows = await hashedOverBatch<{ relid: number; truncated: boolean; keyed: boolean; n: string }>(
    source,
    relids,
    (from) => `SELECT d.relid::int AS relid, bool_or(d.op = 'T') AS truncated, bool_or(d.op <> 'T') AS keyed, count(*) AS n FROM ${from} GROUP BY d.relid`,
  );
  return rows.map((x) => ({ relid: x.relid, truncated: x.truncated, keyed: x.keyed, rows: Number(x.n) }));
}

/** A table's keys in the current batch (batchKeys): a JSON array of objects by key column, each key once, and how many. */
export interface BatchKeys {
  keys: string;
  n: number;
}

/**
 * The current batch's keys of each of `relids`: the keys as the capture
 * trigger wrote them, JSON objects by key column, each key once (a TRUNCATE
 * has none). One pass over the batch for all the tables, where one query per
 * table read the whole batch once per table: a lane's run of one change in
 * each of 50 tables took 48 against 66 ms, of 50 changes in each of 4
 * tables 12.2 against 14.2 ms (medians of 21 and 41 alternating rounds, by
 * hand, on two durable servers). Meant for tables with few changes in the
 * batch (the caller's choice): each table's keys come back as one text.
 */
export async function batchKeys(source: pg.ClientBase, relids: number[]): Promise<Map<number, BatchKeys>> {
  if (relids.length === 0) return new Map();
  const rows = await hashedOverBatch<{ relid: number; keys: string; n: number }>(
    source,
    relids,
    (from) => `SELECT k.relid::int AS relid, jsonb_agg(k.pk)::text AS keys, count(*)::int AS n
                 FROM (SELECT DISTINCT d.relid, d.pk FROM ${from} WHERE d.op <> 'T') k GROUP BY k.relid`,
  );
  return new Map(rows.map((r) => [r.relid, { keys: r.keys, n: r.n }]));
}

/** A key changed in a batch (multi-master: conflicts need them), as JSON text, with when it last changed (microseconds since the epoch, and as text). */
export interface ChangedKey {
  pk: string;
  us: string;
  at: string;
}

/** The select-list items of a ChangedKey's `us` and `at`, the latest of `at` (an expression over the delta rows of a group). */
export const lastChangedItems = (at: string): string => `(extract(epoch FROM max(${at})) * 1000000)::bigint::text AS us, max(${at})::text AS at`;

/**
 * The current batch's changed keys of each of `relids`, each once with when
 * it last changed (`at`, an expression over the delta row d), in one pass
 * over the batch for all the tables, where a query per table read the whole
 * batch once per table: a two-source run, both sources having changed one
 * key in each of 50 tables, took 80 against 113 ms; 50 keys in each of 4
 * tables, 20.4 against 24.6 ms (medians of 21 and 41 alternating rounds, by
 * hand, on two durable servers). The keys are as the capture trigger wrote them:
 * only for tables whose delta keys are already in the form keys are
 * compared in across sources (keyTextCanonical in key-types.ts).
 */
export async function batchChangedKeys(source: pg.ClientBase, relids: number[], at: string): Promise<Map<number, ChangedKey[]>> {
  const byTable = new Map<number, ChangedKey[]>();
  if (relids.length === 0) return byTable;
  const rows = await hashedOverBatch<ChangedKey & { relid: number }>(
    source,
    relids,
    (from) => `SELECT d.relid::int AS relid, d.pk::text AS pk, ${lastChangedItems(at)} FROM ${from} WHERE d.op <> 'T' GROUP BY d.relid, d.pk`,
  );
  for (const { relid, ...key } of rows) {
    const keys = byTable.get(relid);
    if (keys) keys.push(key);
    else byTable.set(relid, [key]);
  }
  return byTable;
}

/** Changes committed on a lane's source and not yet applied on its target. */
export interface LanePending {
  rows: number;
  /** Age in seconds of the oldest such change (0 when none). */
  lagSeconds: number;
}

/** Rows pending on the source after `position` for a sync's tracked tables, and the age of the oldest. */
export async function pendingAfter(source: pg.ClientBase, job: string, sync: string, position: string): Promise<LanePending> {
  const r = await source.query<{ changes: string; lag_seconds: number | null }>('SELECT changes, lag_seconds FROM repl.pending($1, $2, $3)', [
    position,
    job,
    sync,
  ]);
  return { rows: Number(r.rows[0]!.changes), lagSeconds: Math.max(0, r.rows[0]!.lag_seconds ?? 0) };
}

async function onePosition(client: pg.ClientBase, sql: string, params: string[]): Promise<string | null> {
  const r = await client.query<{ p: string }>(sql, params);
  return r.rows[0]?.p ?? null;
}

/** The position the lane's target has applied, read on the target without a lock (null: none yet). */
export function appliedPosition(target: pg.ClientBase, lane: LaneRef): Promise<string | null> {
  return onePosition(target, 'SELECT position::text AS p FROM repl.applied WHERE job = $1 AND sync = $2 AND source = $3', [lane.job, lane.sync, lane.source]);
}

/** Where a lane starts when the target has no position yet: what add-triggers registered on the source (null: nothing). */
export function registeredPosition(source: pg.ClientBase, lane: LaneRef): Promise<string | null> {
  return onePosition(source, 'SELECT position::text AS p FROM repl.consumer WHERE job = $1 AND sync = $2 AND target = $3', [lane.job, lane.sync, lane.target]);
}

/**
 * The order in which whatever locks positions on several databases (a
 * multi-master run, a compare, a clone) takes them: one database after
 * another, by name. With one order for all there is no cycle of waits across
 * servers (a run holding c's while a compare holding a's waits for them),
 * which no server's deadlock check could see: both would wait for ever.
 */
export function inLockOrder<T>(items: readonly T[], db: (item: T) => string): T[] {
  return [...items].sort((x, y) => (db(x) < db(y) ? -1 : db(x) > db(y) ? 1 : 0));
}

/**
 * The lane's position on its target, row-locked until the target's
 * transaction ends (no other run applies the lane meanwhile); `initial` is
 * stored first when the lane has no row yet and it is given. Null: no row.
 */
export async function lockPosition(target: pg.ClientBase, lane: LaneRef, initial: string | null = null): Promise<string | null> {
  const r = await target.query<{ p: string | null }>('SELECT repl.lock_position($1, $2, $3, $4)::text AS p', [lane.job, lane.sync, lane.source, initial]);
  return r.rows[0]?.p ?? null;
}

/**
 * Every position the node has for a sync, row-locked until its transaction
 * ends (source -> position). Also prints timestamps in UTC for the rest of
 * the transaction: multi-master compares keys as text across nodes.
 */
export async function lockSyncPositions(node: pg.ClientBase, job: string, sync: string): Promise<Map<string, string>> {
  const r = await node.query<{ source: string; p: string }>(
    `SELECT source, position::text AS p, set_config('TimeZone', 'UTC', true) FROM repl.applied WHERE job = $1 AND sync = $2 FOR UPDATE`,
    [job, sync],
  );
  return new Map(r.rows.map((x) => [x.source, x.p]));
}

/** In the target's applying transaction: the lane has applied everything up to `position`. */
export async function storePosition(target: pg.ClientBase, lane: LaneRef, position: string): Promise<void> {
  await target.query('SELECT repl.store_position($1, $2, $3, $4)', [lane.job, lane.sync, lane.source, position]);
}

/**
 * On the source, after the target committed: how far the target has got, so
 * the source's delta log can be purged. Committed without waiting for its
 * WAL flush (synchronous_commit off, for this statement's transaction only):
 * the copy only drives the purge and may lag behind, so a crash that loses
 * it costs nothing but a later purge, while waiting cost the source's
 * writers one more flush per run, up to 40 a second under load.
 */
export async function confirmPosition(source: pg.ClientBase, lane: LaneRef, position: string): Promise<void> {
  await source.query(`SELECT set_config('synchronous_commit', 'off', true), repl.confirm_position($1, $2, $3, $4)`, [
    lane.job,
    lane.sync,
    lane.target,
    position,
  ]);
}

/** The source's snapshot now: what a kick asks to be applied (see caughtUp). */
export async function currentPosition(source: pg.ClientBase): Promise<string> {
  const r = await source.query<{ p: string }>('SELECT pg_current_snapshot()::text AS p');
  return r.rows[0]!.p;
}

/** On the source: a target at `position` has applied every change of the sync's tables that `upto` saw committed. */
export async function caughtUp(source: pg.ClientBase, job: string, sync: string, position: string, upto: string): Promise<boolean> {
  const r = await source.query<{ ok: boolean }>('SELECT repl.caught_up($1, $2, $3, $4) AS ok', [position, upto, job, sync]);
  return r.rows[0]!.ok;
}
