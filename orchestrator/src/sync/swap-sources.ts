import type pg from 'pg';
import type { SyncConfig } from '../config/types.js';
import { CapraError } from '../util/errors.js';
import { tableLabel } from '../db/ident.js';
import { INDEX_LOOKUP_KEYS, fewKeys, keyDefs } from './apply.js';
import {
  type BatchKeys,
  type ChangedKey,
  type LaneRef,
  batchChangedKeys,
  batchChanges,
  batchCut,
  batchKeys,
  batchTables,
  changesAfter,
  lastChangedItems,
  registeredPosition,
  startBatch,
} from './delta-log.js';
import { keyTextCanonical } from './key-types.js';
import { type Snap, batchEnd, formatSnapshot, isLater, parseSnapshot } from './snapshot.js';
import { type TableMeta, type TableRow, matchOnTarget, sourceTables } from './table-meta.js';

/**
 * Multi-master, step one: what each source changed. Every source's batch
 * starts at the oldest position any receiver has for it (a receiver whose
 * commit failed last time is behind), so every receiver is given the same
 * keys; the changed keys are listed, with when they changed, only when two
 * or more sources have changes (conflicts need them; one source has none).
 */

/** One change of a key by one source. */
export interface Change {
  us: bigint;
  at: string;
  /** In the source's batch (false: changed after the batch's end, before the run's snapshot). */
  inBatch: boolean;
}

/** table label -> key (as JSON text) -> source -> its change. */
export type Changes = Map<string, Map<string, Map<string, Change>>>;

export interface SourceRun {
  db: string;
  client: pg.ClientBase;
  cur: Snap;
  curText: string;
  oldText: string;
  endText: string;
  more: boolean;
  /** relid on this source -> key columns */
  keys: Map<number, string[]>;
  clock: 'commit' | 'change';
  /** Tables (by label) with changes in the batch (or, hasKeys false, only seen changed after it), as this source has them. */
  metas: Map<string, SourceTable>;
  truncated: Set<string>;
}

export interface SourceTable {
  row: TableRow;
  /** The table read on this source itself: its key types and columns. */
  meta: TableMeta;
  /** The batch holds keys of it (not only a TRUNCATE). */
  hasKeys: boolean;
  /** Its delta rows in the batch (undefined: only seen changed after it). */
  deltaRows?: number;
  /** Its keys in the batch, read with every other table's that has few changes (batchKeys). */
  listed?: BatchKeys;
}

/**
 * A source's snapshot, tracked tables and batch bounds. `applied` is, per
 * receiver, the positions it holds (source -> position); a receiver without
 * one for this source starts where add-triggers registered it.
 */
export async function openSource(
  client: pg.ClientBase,
  db: string,
  job: string,
  sync: SyncConfig,
  applied: Map<string, Map<string, string>>,
  batchRows: number,
): Promise<SourceRun> {
  const head = await client.query<{ s: string; tracked: { relid: number; key_cols: string[] }[]; commit_ts: boolean }>(
    `SELECT pg_current_snapshot()::text AS s, current_setting('track_commit_timestamp')::boolean AS commit_ts,
            coalesce((SELECT json_agg(json_build_object('relid', relid::int, 'key_cols', key_cols))
                        FROM repl.consumer_table WHERE job = $1 AND sync = $2), '[]') AS tracked`,
    [job, sync.name],
  );
  const curText = head.rows[0]!.s;
  const keys = new Map(head.rows[0]!.tracked.map((r) => [r.relid, r.key_cols]));
  let oldest: string | null = null;
  for (const [receiver, positions] of applied) {
    if (receiver === db) continue;
    const lane: LaneRef = { job, sync: sync.name, source: db, target: receiver };
    const pos = positions.get(db) ?? (await registeredPosition(client, lane));
    if (!pos) throw new CapraError(`sync ${sync.name}: ${db} has no consumer registered for ${receiver}: run capra add-triggers`);
    if (oldest === null || isLater(parseSnapshot(oldest), parseSnapshot(pos))) oldest = pos;
  }
  const oldText = oldest!;
  const cut = await batchCut(client, oldText, curText, job, [...keys.keys()], batchRows);
  const cur = parseSnapshot(curText);
  const run: SourceRun = {
    db,
    client,
    cur,
    curText,
    oldText,
    endText: oldText,
    more: false,
    keys,
    clock: head.rows[0]!.commit_ts ? 'commit' : 'change',
    metas: new Map(),
    truncated: new Set(),
  };
  if (cut.first !== null) {
    const { end, more } = batchEnd(parseSnapshot(oldText), cur, cut);
    run.endText = formatSnapshot(end);
    run.more = more;
  }
  return run;
}

/** When a change happened: its commit time where the server keeps them, else the clock at the write. */
const changedAtSql = (s: SourceRun): string => (s.clock === 'commit' ? `coalesce(pg_xact_commit_timestamp(d.txid::xid), d.at)` : 'd.at');

/** The source's batch, key by key, into `changes`; returns the number of keys (delta rows where keys are not listed). */
export async function readBatch(s: SourceRun, job: string, changes: Changes, listKeys: boolean): Promise<number> {
  if (s.endText === s.oldText) return 0;
  await startBatch(s.client, s.oldText, s.endText, job);
  const per = await batchTables(s.client, [...s.keys.keys()]);
  const live = await sourceTables(
    s.client,
    per.map((r) => r.relid),
  );
  // A table dropped on the source since its deltas were written has nothing left to send.
  const metas = await matchOnTarget(s.client, live, s.keys, s.db);
  const info = new Map(per.map((r) => [r.relid, r]));
  const withKeys = metas.filter((m) => info.get(m.relid)!.keyed);
  // Conflicts need the changed keys: of every table whose delta keys compare as they are, in one pass over the batch.
  const canonical = new Set(listKeys ? withKeys.filter(keyTextCanonical).map((m) => m.relid) : []);
  const changed = await batchChangedKeys(s.client, [...canonical], changedAtSql(s));
  // The apply's keys of every table with few changes: where conflicts need none listed, in one pass; else from those listed.
  const listed = await batchKeys(s.client, listKeys ? [] : withKeys.filter((m) => fewKeys(info.get(m.relid)!)).map((m) => m.relid));
  let n = 0;
  for (const meta of metas) {
    const { keyed, rows, truncated } = info.get(meta.relid)!;
    const table = tableLabel(meta);
    const source: SourceTable = { row: live.get(meta.relid)!, meta, hasKeys: keyed, deltaRows: rows, listed: listed.get(meta.relid) };
    s.metas.set(table, source);
    if (truncated) s.truncated.add(table);
    if (!keyed || !listKeys) {
      if (!changes.has(table)) changes.set(table, new Map());
      n += rows;
      continue;
    }
    const keys = canonical.has(meta.relid)
      ? (changed.get(meta.relid) ?? [])
      : (await s.client.query<ChangedKey>(changedKeysSql(s, meta, batchChanges(meta.relid)))).rows;
    note(changes, table, s.db, keys, true);
    if (keys.length <= INDEX_LOOKUP_KEYS) source.listed = { keys: `[${keys.map((k) => k.pk).join(', ')}]`, n: keys.length };
    n += keys.length;
  }
  return n;
}

/** Each changed key (r) of one table, with when it last changed, among the deltas of `from` (a FROM item aliased d), joined to `join`. */
function changedKeysSql(s: SourceRun, meta: TableMeta, from: string, join = ''): string {
  const at = changedAtSql(s);
  return `SELECT to_jsonb(r)::text AS pk, ${lastChangedItems(at)}
            FROM ${from} CROSS JOIN LATERAL jsonb_to_record(d.pk) AS r(${keyDefs(meta)})${join}
           WHERE d.relid = ${Number(meta.relid)} AND d.op <> 'T'
           GROUP BY 1`;
}

/**
 * For a source whose batch was cut short: which keys of the other sources'
 * batches it changed after the cut, so they are seen as conflicts now rather
 * than overwritten by a version that is older than its own.
 */
export async function readLater(s: SourceRun, job: string, changes: Changes): Promise<void> {
  const tracked = await sourceTables(s.client, [...s.keys.keys()]);
  const wanted = [...tracked.values()].filter((t) => (changes.get(tableLabel(t))?.size ?? 0) > 0);
  // Tables outside this source's batch: their metadata here, for the query and for reading versions.
  const absent = wanted.filter((t) => !s.metas.has(tableLabel(t)));
  const absentMetas = absent.length > 0 ? await matchOnTarget(s.client, new Map(absent.map((t) => [t.relid, t])), s.keys, s.db) : [];
  for (const meta of absentMetas) {
    s.metas.set(tableLabel(meta), { row: tracked.get(meta.relid)!, meta, hasKeys: false });
  }
  for (const t of wanted) {
    const table = tableLabel(t);
    const r = await s.client.query<ChangedKey>(
      changedKeysSql(s, s.metas.get(table)!.meta, changesAfter('$1', '$2', '$3'), ' JOIN unnest($4::text[]) AS k(pk) ON k.pk = to_jsonb(r)::text'),
      [s.endText, s.curText, job, [...changes.get(table)!.keys()]],
    );
    note(changes, table, s.db, r.rows, false);
  }
}

function note(changes: Changes, table: string, db: string, rows: ChangedKey[], inBatch: boolean): void {
  let keys = changes.get(table);
  if (!keys) changes.set(table, (keys = new Map()));
  for (const row of rows) {
    let by = keys.get(row.pk);
    if (!by) {
      if (!inBatch) continue;
      keys.set(row.pk, (by = new Map()));
    }
    if (!by.has(db)) by.set(db, { us: BigInt(row.us), at: row.at, inBatch });
  }
}
