import type pg from 'pg';
import { isDiscarded } from '../db/connections.js';
import { serverMajor } from '../db/server-major.js';
import { onlyUnlessPartitioned, quoteIdent, quoteLiteral, quoteTable } from '../db/ident.js';
import { type BatchKeys, type BatchTable, batchChanges } from './delta-log.js';
import type { TableMeta } from './table-meta.js';
import { type ApplyPhases, timed } from './apply-phases.js';
import { type Outcome, copyBetween, deleteThenCopy, rowsOf } from './copy-rows.js';
import { castOf, keyReadAsText, keyTextCanonical } from './key-types.js';
import { amongKeys, andFilter, identityMatch, keyInArray, selectItems, targetTable, whereFilter } from './table-shape.js';

/**
 * Applying one table of a batch (see startBatch in delta-log.ts) to a
 * target: the target takes "the row's current state on the source" for every
 * key the batch touched (delete, then COPY the rows that still exist).
 * Repeating it gives the same result, so a batch may be applied twice without
 * harm. Data moves as COPY text from the source's connection straight into
 * the target's; no row is parsed here. A multi-master run gives a source's
 * batch to several receivers at once: the source reads the keys and rows
 * once, and each COPY out feeds every receiver's COPY in (see Tee).
 */

/** `a.k1 = b.k1 AND a.k2 = b.k2 ...` over the key columns: the join of a table with a set of its keys. */
export function keyMatch(keyCols: string[], a: string, b: string): string {
  return keyCols.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
}

/**
 * The batch's keys of one table, typed. jsonb_to_record with just the key
 * columns, not jsonb_populate_record(NULL::table): that one also runs every
 * other column's NULL through its domain's checks and fails on a NOT NULL
 * domain column.
 */
function keysQuery(t: TableMeta, except?: string): string {
  const skip = except ? `NOT EXISTS (SELECT 1 FROM ${quoteIdent(except)} x WHERE ${keyMatch(t.keyCols, 'x', 'r')})` : null;
  if (keyReadAsText(t)) {
    const cols = t.keyCols.map((k, i) => `(d.pk->>${quoteLiteral(k)})::${castOf(t.keyTypes[i]!)} AS ${quoteIdent(k)}`).join(', ');
    return `SELECT DISTINCT r.* FROM (SELECT ${cols} FROM ${batchChanges(t.relid)} WHERE d.op <> 'T') r${skip ? ` WHERE ${skip}` : ''}`;
  }
  const cols = t.keyCols.map((k) => `r.${quoteIdent(k)}`).join(', ');
  return `SELECT DISTINCT ${cols} FROM ${batchChanges(t.relid)} CROSS JOIN LATERAL jsonb_to_record(d.pk) AS r(${keyDefs(t)})
           WHERE d.op <> 'T'${skip ? ` AND ${skip}` : ''}`;
}

/** The key columns with their types, for jsonb_to_record(set). keyTypes come from format_type() in the source's session: SQL-ready type names. */
export function keyDefs(t: TableMeta): string {
  return t.keyCols.map((k, i) => `${quoteIdent(k)} ${t.keyTypes[i]}`).join(', ');
}

/**
 * Up to this many keys, the batch's keys travel to the target as one
 * parameter; more go through a temp table filled by COPY.
 */
export const INDEX_LOOKUP_KEYS = 5_000;

/** Whether a table's keys in the batch are read with every other such table's at once (batchKeys): it has keys, no TRUNCATE, and few changes. */
export const fewKeys = (r: BatchTable): boolean => r.keyed && !r.truncated && r.rows <= INDEX_LOOKUP_KEYS;

/**
 * A batch's DELETE on the target and its row fetch on the source look each
 * key up by the table's key index unless the keys are more than this share
 * of the table. The planner cannot tell on its own: the source's batch
 * condition has no statistics, nor has the target's temp table of keys, and
 * even after an ANALYZE of it the planner hash-joins a seq scan of the whole
 * table. That made every batch cost as much as the table is large, so a
 * backlog cost the square of its size: measured on a 1,000,000-row table,
 * a DELETE of 10,000 keys took 459 ms hash-joined and 77 ms by the index; of
 * 100,000 keys, 742 ms and 530 ms. For a handful of keys the hash join was
 * 43 ms per run at 100,000 rows.
 */
const INDEX_LOOKUP_SHARE = 0.25;

/** Whether `n` keys of `t` are looked up by its key index (see INDEX_LOOKUP_SHARE); a whole-row identity has none, and is left its hash joins. */
export function useKeyIndex(t: TableMeta, n: number): boolean {
  if (t.shape?.fullRow) return false;
  return n <= INDEX_LOOKUP_KEYS || n <= t.estimatedRows * INDEX_LOOKUP_SHARE;
}

/**
 * Up to this many keys looked up by the key index go to it as one array
 * (`key = ANY (ARRAY(...))`) rather than joined key by key, when the key is
 * one column of a plain type (TEXT_READ_TYPES in key-types.ts: an
 * array-typed key would make a two-dimensional array) and the table is not
 * partitioned (each partition's index would be given every key, and before
 * PostgreSQL 17 descended once per key). The index then reads the keys in
 * one ordered pass from PostgreSQL 17 on; older servers descend it once per
 * key, as the join does, with less overhead. A target's DELETE of 100,000
 * keys of a 400,000-row table took 67 ms against 145 ms joined (PostgreSQL
 * 18; 122 against 132 ms on 15); of 20,000 keys of 100,000 rows, 15 against
 * 30 ms; with text keys in no order, 147 against 313 ms (202 against 246 on
 * 15); of 10,000 keys spread over 1,000,000 rows, 24 against 23 ms (medians
 * of 6 rounds, by hand, each DELETE then a COPY of the rows back,
 * alternating). Above it the array, which the server builds in memory, is
 * left to the join.
 */
export const KEY_ARRAY_MAX = 200_000;

/** Whether `n` keys of `t`, in a table that is partitioned or not on that side, may go to its key index as one array (see KEY_ARRAY_MAX). */
export function keyArray(t: TableMeta, n: number, partitioned: boolean): boolean {
  return !partitioned && n <= KEY_ARRAY_MAX && t.keyCols.length === 1 && keyTextCanonical(t);
}

/**
 * From this major version on, keys that go as one array (keyArray) are
 * looked up by the key index up to ARRAY_LOOKUP_SHARE of the table rather
 * than INDEX_LOOKUP_SHARE: the index reads the array in one pass there.
 */
export const ARRAY_SCAN_MAJOR = 17;

/**
 * The share of the table up to which an array of keys goes to the key index
 * on a server of ARRAY_SCAN_MAJOR or later. A target's DELETE (PostgreSQL
 * 18) of 40,000 keys of 100,000 rows took 25 ms as an array against 40 ms
 * hash-joined (uuid keys in no order, 31 against 43); of half the table, 32
 * against 50 (uuid, 56 against 59); of all of it, 61 to 75 against 82 to 89
 * for integer keys in the table's order, but 172 to 180 against 97 to 106
 * for text or uuid keys in no order. On PostgreSQL 15 the array was slower
 * than the hash join from half the table on (52 against 42 ms, uuid 80
 * against 50), and faster at a quarter (122 against 148 ms).
 */
const ARRAY_LOOKUP_SHARE = 0.5;

/** How a batch's keys are looked up on one server: by the table's key index (joined key by key, or as one array) or not (hash-joined). */
export interface KeyLookup {
  indexed: boolean;
  array: boolean;
}

/** How `n` keys of `t` are looked up on a server of major version `major`, whose table is partitioned or not (see useKeyIndex, keyArray). */
export function keyLookup(t: TableMeta, n: number, partitioned: boolean, major: number): KeyLookup {
  const array = keyArray(t, n, partitioned);
  const indexed = useKeyIndex(t, n) || (array && major >= ARRAY_SCAN_MAJOR && n <= t.estimatedRows * ARRAY_LOOKUP_SHARE);
  return { indexed, array: indexed && array };
}

/** keyLookup on the server `client` is connected to. */
async function lookupOn(client: pg.ClientBase, t: TableMeta, n: number, partitioned: boolean): Promise<KeyLookup> {
  return keyLookup(t, n, partitioned, await serverMajor(client));
}

/** Listed keys (a run's few, repair's) are looked up by the key index, as one array where the key allows it. */
const listedLookup = (t: TableMeta, n: number, partitioned: boolean): KeyLookup => ({ indexed: true, array: keyArray(t, n, partitioned) });

/** The target's DELETE of the keys in `keysFrom` (a FROM item aliased k, with the key columns), as one array or joined (see keyArray). */
function deleteKeysSql(t: TableMeta, keysFrom: string, array: boolean): string {
  if (!array) return `DELETE FROM ${targetTable(t)} t USING ${keysFrom} WHERE ${identityMatch(t, 't', 'k')}`;
  return `DELETE FROM ${targetTable(t)} t WHERE ${keyInArray(t, 't', `SELECT k.${quoteIdent(t.keyCols[0]!)} FROM ${keysFrom}`)}`;
}

/**
 * Runs `fn` with the joins that suit how the keys are looked up, for this
 * transaction, then turns them back on: by the key index, hash and merge
 * joins are off (nested loops over the index); otherwise nested loops are
 * off, as the planner, which takes the batch's keys for a handful, would
 * look up a large share of the table key by key (100,000 keys of a
 * 100,000-row table: 330 ms by the index, 190 ms hash-joined). When `fn`
 * fails the transaction is rolled back (to a savepoint, at least), which
 * undoes the setting too; resetting it there would fail and hide `fn`'s
 * error; so would it on a connection that `fn` ended (a COPY failed, see
 * deleteThenCopy). A whole-row identity has no key index and keeps the
 * planner's own choice. Keys that go as one array (keyArray) are not
 * joined to the table, so there is no join to steer: the settings are left
 * alone, two round trips fewer on each server per table and run: a lane's
 * run of one change in each of 50 tables took 60 and 65 ms against 73 and
 * 84 ms, of 50 changes in each of 4 tables 12.7 against 14.4 ms (medians of
 * 15 to 41 alternating rounds, by hand, on two durable servers).
 */
async function joinsFor<T>(client: pg.ClientBase, t: TableMeta, { indexed, array }: KeyLookup, fn: () => Promise<T>): Promise<T> {
  if (t.shape?.fullRow || array) return fn();
  const off = indexed ? ['enable_hashjoin', 'enable_mergejoin'] : ['enable_nestloop'];
  const set = (v: string): string => `SELECT ${off.map((o) => `set_config('${o}', '${v}', true)`).join(', ')}`;
  await client.query(set('off'));
  const result = await fn();
  if (!isDiscarded(client)) await client.query(set('on'));
  return result;
}

/** How applyKeys is to apply one table's keys. */
export interface ApplyKeysOptions {
  /** A name for the targets' temp table of keys (when there are more than INDEX_LOOKUP_KEYS). */
  tempName: string;
  /** The source's temp table of keys (same key columns) to leave out. */
  except?: string;
  /**
   * The table's delta rows in the batch, when the caller knows them: above
   * INDEX_LOOKUP_KEYS, the keys go through the temp table at once, without
   * first reading up to INDEX_LOOKUP_KEYS of them (a whole pass over the
   * batch's changes).
   */
  deltaRows?: number;
  /**
   * The table's keys in the batch, when the caller has read them already
   * (batchKeys, every small table of a run at once; or a multi-master
   * source's lists of changed keys): no more than INDEX_LOOKUP_KEYS of them,
   * and none to leave out (no `except`).
   */
  listed?: BatchKeys;
  /** With one target only. */
  phases?: ApplyPhases;
}

/** A target of a table's keys: its connection and the table as it has it (its columns, in its order). */
export interface Receiver {
  client: pg.ClientBase;
  t: TableMeta;
}

/**
 * Applies the keys of one table in the batch (but those in `except`) to one
 * target. Returns the number of rows written.
 */
export async function applyKeys(source: pg.ClientBase, target: pg.ClientBase, t: TableMeta, o: ApplyKeysOptions): Promise<number> {
  return rowsOf((await applyKeysTo(source, [{ client: target, t }], o))[0]!);
}

/** The SQL of the source's rows of the keys `keysSql` selects, as target table `t` takes them (the keys as one array: see keyArray). */
function rowsQuery(t: TableMeta, keysSql: string, array = false): string {
  return `SELECT ${selectItems(t, t.columns, 's')} FROM ${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} s
           WHERE ${amongKeys(t, keysSql, array)}${andFilter(t)}`;
}

/**
 * Applies the keys of one table in the batch (but those in `except`) to
 * every target at once: the source reads the keys and the rows once, each
 * COPY out feeding all targets, and the targets delete and copy in at the
 * same time. Targets that take the table differently (their columns in
 * another order) are served one group after another. Returns each target's
 * outcome, in order: a target whose DELETE failed (a multi-master
 * receiver's serialization failure) is given up, and the others go on.
 *
 * Up to INDEX_LOOKUP_KEYS keys are read here (unless given: `listed`) and
 * travel as JSON: to each target's DELETE as one parameter, and back to the
 * source in the row fetch's text, so the batch's changes are read once.
 * More go through a temp table on each target filled by COPY. Creating and dropping a temp
 * table per table and run is catalog work that frequent small runs
 * (kicked, under load) paid on every run.
 */
export async function applyKeysTo(source: pg.ClientBase, receivers: Receiver[], o: ApplyKeysOptions): Promise<Outcome[]> {
  const groups = new Map<string, number[]>();
  for (const [i, r] of receivers.entries()) {
    const sql = `${rowsQuery(r.t, keysQuery(r.t, o.except))}\0${targetTable(r.t)}\0${r.t.columns.join('\0')}`;
    groups.set(sql, [...(groups.get(sql) ?? []), i]);
  }
  const outcomes: Outcome[] = [];
  for (const members of groups.values()) {
    const got = await applyKeysToGroup(
      source,
      members.map((i) => receivers[i]!),
      o,
    );
    for (const [j, i] of members.entries()) outcomes[i] = got[j]!;
  }
  return outcomes;
}

/** applyKeysTo for targets that take the same rows (one key query, one row query). */
async function applyKeysToGroup(source: pg.ClientBase, receivers: Receiver[], o: ApplyKeysOptions): Promise<Outcome[]> {
  const { except, phases } = o;
  const t = receivers[0]!.t;
  const none = (): Outcome[] => receivers.map(() => ({ rows: 0 }));
  if (o.listed || o.deltaRows === undefined || o.deltaRows <= INDEX_LOOKUP_KEYS) {
    // Each key as an object by column name (a bare row reference would name a key column called like the alias).
    const asObject = `json_build_object(${t.keyCols.map((k) => `${quoteLiteral(k)}, q.${quoteIdent(k)}`).join(', ')})`;
    const { keys, n } =
      o.listed ??
      (
        await timed(phases, 'keyScan', () =>
          source.query<{ keys: string | null; n: number }>(
            `SELECT json_agg(${asObject})::text AS keys, count(*)::int AS n FROM (${keysQuery(t, except)} LIMIT ${INDEX_LOOKUP_KEYS + 1}) q`,
          ),
        )
      ).rows[0]!;
    if (n === 0) return none();
    if (n <= INDEX_LOOKUP_KEYS) {
      return deleteAndCopy(
        source,
        t,
        listedKeys(t, keys!),
        listedLookup(t, n, t.partitioned),
        receivers.map((r) => ({ ...r, del: () => deleteListedKeys(r.client, r.t, keys!, n) })),
        phases,
      );
    }
  }
  const keyList = t.keyCols.map(quoteIdent).join(', ');
  const temp = quoteIdent(o.tempName);
  // The keys' trip into the targets' temp tables is part of the key scan.
  const all = await timed(phases, 'keyScan', async () => {
    await Promise.all(
      receivers.map((r) => r.client.query(`CREATE TEMP TABLE ${temp} ON COMMIT DROP AS SELECT ${keyList} FROM ${targetTable(r.t)} WITH NO DATA`)),
    );
    return copyBetween(
      source,
      receivers.map((r) => r.client),
      keysQuery(t, except),
      `COPY ${temp} (${keyList}) FROM STDIN`,
    );
  });
  if (all === 0) return none();
  // Each server looks the keys up as suits its version (see ARRAY_SCAN_MAJOR).
  return deleteAndCopy(
    source,
    t,
    keysQuery(t, except),
    await lookupOn(source, t, all, t.partitioned),
    receivers.map((r) => ({
      ...r,
      del: async () => {
        const lookup = await lookupOn(r.client, r.t, all, r.t.targetPartitioned);
        return joinsFor(r.client, r.t, lookup, () => r.client.query(deleteKeysSql(r.t, `${temp} k`, lookup.array)));
      },
    })),
    phases,
  );
}

/**
 * deleteThenCopy (copy-rows.ts) of the source's rows of the keys `keysSql`
 * selects, as the shape of `t` (which every target shares) says, with the
 * source's joins set for how the keys are looked up.
 */
function deleteAndCopy(
  source: pg.ClientBase,
  t: TableMeta,
  keysSql: string,
  lookup: KeyLookup,
  targets: (Receiver & { del: () => Promise<unknown> })[],
  phases?: ApplyPhases,
): Promise<Outcome[]> {
  const copyOut = `COPY (${rowsQuery(t, keysSql, lookup.array)}) TO STDOUT`;
  const copyIn = (r: Receiver): string => `COPY ${targetTable(r.t)} (${r.t.columns.map(quoteIdent).join(', ')}) FROM STDIN`;
  return joinsFor(source, t, lookup, () =>
    deleteThenCopy(
      source,
      copyOut,
      targets.map((r) => ({ client: r.client, del: r.del, copyIn: copyIn(r) })),
      phases,
    ),
  );
}

/** SQL selecting the key columns of the keys in `keysJson` (a JSON array of objects by key column), as a literal: for a COPY, which takes no parameters. */
function listedKeys(t: TableMeta, keysJson: string): string {
  return `SELECT ${t.keyCols.map((k) => `k.${quoteIdent(k)}`).join(', ')} FROM jsonb_to_recordset(${quoteLiteral(keysJson)}::jsonb) AS k(${keyDefs(t)})`;
}

/** The target's DELETE of the `n` keys in `keysJson` (a JSON array of objects by key column), by the key index. */
function deleteListedKeys(target: pg.ClientBase, t: TableMeta, keysJson: string, n: number): Promise<unknown> {
  const lookup = listedLookup(t, n, t.targetPartitioned);
  return joinsFor(target, t, lookup, () => target.query(deleteKeysSql(t, `jsonb_to_recordset($1::jsonb) AS k(${keyDefs(t)})`, lookup.array), [keysJson]));
}

/**
 * A TRUNCATE in the batch: the target's table is emptied and refilled with
 * the source's whole current contents. Applying only the batch's keys would
 * lose rows written after the truncate by a transaction that landed in an
 * earlier batch.
 */
export async function applyTruncate(source: pg.ClientBase, target: pg.ClientBase, t: TableMeta, phases?: ApplyPhases): Promise<number> {
  const cols = t.columns.map(quoteIdent).join(', ');
  await timed(phases, 'targetDelete', () => target.query(`TRUNCATE ${onlyUnlessPartitioned(t.targetPartitioned)}${targetTable(t)}`));
  return copyBetween(
    source,
    [target],
    `SELECT ${selectItems(t, t.columns, 's')} FROM ${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} s${whereFilter(t)}`,
    `COPY ${targetTable(t)} (${cols}) FROM STDIN`,
    phases,
  );
}

/**
 * Repair's apply (capra repair): the target takes the source's current
 * state of the listed keys (JSON objects by key column), as applyKeys does
 * for a batch's keys: delete them, then COPY the source's rows that exist.
 * With no source, the keys are only deleted. Returns the rows written.
 */
export async function applyKeyList(source: pg.ClientBase | null, target: pg.ClientBase, t: TableMeta, keys: Record<string, string>[]): Promise<number> {
  const json = JSON.stringify(keys);
  if (!source) {
    await deleteListedKeys(target, t, json, keys.length);
    return 0;
  }
  const [outcome] = await deleteAndCopy(source, t, listedKeys(t, json), listedLookup(t, keys.length, t.partitioned), [
    { client: target, t, del: () => deleteListedKeys(target, t, json, keys.length) },
  ]);
  return rowsOf(outcome!);
}
