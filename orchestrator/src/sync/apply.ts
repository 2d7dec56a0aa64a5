import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { discardConnection } from '../db/connections.js';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { onlyUnlessPartitioned, quoteIdent, quoteLiteral, quoteTable } from '../db/ident.js';
import { batchChanges } from './delta-log.js';
import type { TableMeta } from './table-meta.js';
import { amongKeys, andFilter, identityMatch, selectItems, targetTable, whereFilter } from './table-shape.js';

/**
 * Applying one table of a batch (see startBatch in delta-log.ts) to a
 * target: the target takes "the row's current state on the source" for every
 * key the batch touched (delete, then COPY the rows that still exist).
 * Repeating it gives the same result, so a batch may be applied twice without
 * harm. Data moves as COPY text from the source's connection straight into
 * the target's; no row is parsed here.
 */

/** `a.k1 = b.k1 AND a.k2 = b.k2 ...` over the key columns: the join of a table with a set of its keys. */
export function keyMatch(keyCols: string[], a: string, b: string): string {
  return keyCols.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
}

/**
 * Key types whose value in the delta's jsonb key is read by `->>` and a
 * cast: to_jsonb writes them as a JSON string or number whose text is the
 * type's own input form, so this reads what jsonb_to_record would, in about
 * half the time (a lateral function call per delta row cost 50 ms of a
 * 120 ms pass over 100,000 changes). Arrays, composites and json are
 * written as JSON structures and need jsonb_to_record.
 */
const TEXT_READ_TYPES = /^(smallint|integer|bigint|text|uuid|character varying(\(\d+\))?)$/;

/** The cast of a key read as text (see TEXT_READ_TYPES): a varchar's length is left out, as the value came from the column. */
const castOf = (type: string): string => type.replace(/\(\d+\)$/, '');

/**
 * The batch's keys of one table, typed. jsonb_to_record with just the key
 * columns, not jsonb_populate_record(NULL::table): that one also runs every
 * other column's NULL through its domain's checks and fails on a NOT NULL
 * domain column.
 */
function keysQuery(t: TableMeta, except?: string): string {
  const skip = except ? `NOT EXISTS (SELECT 1 FROM ${quoteIdent(except)} x WHERE ${keyMatch(t.keyCols, 'x', 'r')})` : null;
  if (t.keyTypes.every((type) => TEXT_READ_TYPES.test(type))) {
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
 * Milliseconds a run spent in each step of its apply, for the bench
 * (bench/phases.ts) to say where a batch's time goes. Only timed, with
 * performance.now() around what runs anyway: nothing runs differently.
 * setup: the rest of the run (snapshot, the batch's transactions, table
 * metadata, the position's lock). The steps follow one another and add up
 * to the run (stepsMs), but for the source's row fetch, which runs while the
 * target deletes the keys (deleteThenCopy): rowFetch is its time beyond the
 * DELETE, rowFetchUnderDelete its time under it, which the run does not wait
 * for on top of the DELETE.
 */
export interface ApplyPhases {
  setup: number;
  keyScan: number;
  rowFetch: number;
  targetDelete: number;
  copyIn: number;
  positionWrite: number;
  commit: number;
  rowFetchUnderDelete: number;
}

/** The steps that follow one another in a run: their times add up to the run's. */
export const SEQUENTIAL_STEPS = ['setup', 'keyScan', 'rowFetch', 'targetDelete', 'copyIn', 'positionWrite', 'commit'] as const;

/** The run's time the phases account for (every step but the row fetch's part under the DELETE). */
export const stepsMs = (p: ApplyPhases): number => SEQUENTIAL_STEPS.reduce((ms, step) => ms + p[step], 0);

export const noPhases = (): ApplyPhases => ({
  setup: 0,
  keyScan: 0,
  rowFetch: 0,
  targetDelete: 0,
  copyIn: 0,
  positionWrite: 0,
  commit: 0,
  rowFetchUnderDelete: 0,
});

/** Runs `fn`, adding the time it took to `phase` of `phases` when given. */
export async function timed<T>(phases: ApplyPhases | undefined, phase: keyof ApplyPhases, fn: () => Promise<T>): Promise<T> {
  if (!phases) return fn();
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    phases[phase] += performance.now() - t0;
  }
}

/**
 * Streams a query's rows from the source into the target's COPY. When either
 * side fails, the source's COPY is torn down midway and its connection can
 * take no more queries (see discardConnection): it is ended, and with it the
 * source's transaction.
 *
 * With `phases`, the copy's time is split between rowFetch (until the source
 * has sent its last row) and copyIn (what the target took after that, and
 * while the source was held back because the target had not taken the rows
 * sent so far): the two overlap in the stream, and this charges the waits to
 * the side that caused them.
 */
async function copyBetween(source: pg.ClientBase, target: pg.ClientBase, selectSql: string, copyInSql: string, phases?: ApplyPhases): Promise<number> {
  const out = source.query(copyTo(`COPY (${selectSql}) TO STDOUT`));
  const into = target.query(copyFrom(copyInSql));
  const t0 = performance.now();
  let fetched = 0;
  let held = 0;
  let heldSince: number | null = null;
  if (phases) {
    // pipeline pauses the source when the target's buffer is full and lets it flow on 'drain'.
    out.on('pause', () => void (heldSince ??= performance.now()));
    into.on('drain', () => {
      if (heldSince !== null) held += performance.now() - heldSince;
      heldSince = null;
    });
    out.once('end', () => void (fetched = performance.now()));
  }
  try {
    await pipeline(out, into);
  } catch (err) {
    discardConnection(source);
    throw err;
  }
  if (phases) {
    const done = performance.now();
    const end = fetched || done;
    phases.rowFetch += end - t0 - held;
    phases.copyIn += done - end + held;
  }
  return into.rowCount ?? 0;
}

/**
 * Up to this many keys, the batch's keys travel to the target as one
 * parameter; more go through a temp table filled by COPY.
 */
export const INDEX_LOOKUP_KEYS = 5_000;

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
 * Runs `fn` with the joins that suit how the keys are looked up, for this
 * transaction, then turns them back on: by the key index, hash and merge
 * joins are off (nested loops over the index); otherwise nested loops are
 * off, as the planner, which takes the batch's keys for a handful, would
 * look up a large share of the table key by key (100,000 keys of a
 * 100,000-row table: 330 ms by the index, 190 ms hash-joined). When `fn`
 * fails the transaction is rolled back (to a savepoint, at least), which
 * undoes the setting too; resetting it there would fail and hide `fn`'s
 * error. A whole-row identity has no key index and keeps the planner's own
 * choice.
 */
async function joinsFor<T>(client: pg.ClientBase, t: TableMeta, indexed: boolean, fn: () => Promise<T>): Promise<T> {
  if (t.shape?.fullRow) return fn();
  const off = indexed ? ['enable_hashjoin', 'enable_mergejoin'] : ['enable_nestloop'];
  const set = (v: string): string => `SELECT ${off.map((o) => `set_config('${o}', '${v}', true)`).join(', ')}`;
  await client.query(set('off'));
  const result = await fn();
  await client.query(set('on'));
  return result;
}

/** How applyKeys is to apply one table's keys. */
export interface ApplyKeysOptions {
  /** A name for the target's temp table of keys (when there are more than INDEX_LOOKUP_KEYS). */
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
  phases?: ApplyPhases;
}

/**
 * Applies the keys of one table in the batch (but those in `except`).
 * Returns the number of rows written. Up to INDEX_LOOKUP_KEYS keys are read
 * here and travel as JSON: to the target's DELETE as one parameter, and back
 * to the source in the row fetch's text, so the batch's changes are read
 * once. More go through a temp table filled by COPY. Creating and dropping a
 * temp table per table and run is catalog work that frequent small runs
 * (kicked, under load) paid on every run.
 */
export async function applyKeys(source: pg.ClientBase, target: pg.ClientBase, t: TableMeta, o: ApplyKeysOptions): Promise<number> {
  const { except, phases } = o;
  if (o.deltaRows === undefined || o.deltaRows <= INDEX_LOOKUP_KEYS) {
    // Each key as an object by column name (a bare row reference would name a key column called like the alias).
    const asObject = `json_build_object(${t.keyCols.map((k) => `${quoteLiteral(k)}, q.${quoteIdent(k)}`).join(', ')})`;
    const few = await timed(phases, 'keyScan', () =>
      source.query<{ keys: string | null; n: number }>(
        `SELECT json_agg(${asObject})::text AS keys, count(*)::int AS n FROM (${keysQuery(t, except)} LIMIT ${INDEX_LOOKUP_KEYS + 1}) q`,
      ),
    );
    const { keys, n } = few.rows[0]!;
    if (n === 0) return 0;
    if (n <= INDEX_LOOKUP_KEYS) return deleteThenCopy(source, target, t, listedKeys(t, keys!), true, () => deleteListedKeys(target, t, keys!, true), phases);
  }
  const keyList = t.keyCols.map(quoteIdent).join(', ');
  const temp = quoteIdent(o.tempName);
  // The keys' trip into the target's temp table is part of the key scan.
  const all = await timed(phases, 'keyScan', async () => {
    await target.query(`CREATE TEMP TABLE ${temp} ON COMMIT DROP AS SELECT ${keyList} FROM ${targetTable(t)} WITH NO DATA`);
    return copyBetween(source, target, keysQuery(t, except), `COPY ${temp} (${keyList}) FROM STDIN`);
  });
  if (all === 0) return 0;
  const indexed = useKeyIndex(t, all);
  return deleteThenCopy(
    source,
    target,
    t,
    keysQuery(t, except),
    indexed,
    () => joinsFor(target, t, indexed, () => target.query(`DELETE FROM ${targetTable(t)} t USING ${temp} k WHERE ${identityMatch(t, 't', 'k')}`)),
    phases,
  );
}

/** SQL selecting the key columns of the keys in `keysJson` (a JSON array of objects by key column), as a literal: for a COPY, which takes no parameters. */
function listedKeys(t: TableMeta, keysJson: string): string {
  return `SELECT ${t.keyCols.map((k) => `k.${quoteIdent(k)}`).join(', ')} FROM jsonb_to_recordset(${quoteLiteral(keysJson)}::jsonb) AS k(${keyDefs(t)})`;
}

/** The target's DELETE of the keys in `keysJson` (a JSON array of objects by key column). */
function deleteListedKeys(target: pg.ClientBase, t: TableMeta, keysJson: string, indexed: boolean): Promise<unknown> {
  return joinsFor(target, t, indexed, () =>
    target.query(`DELETE FROM ${targetTable(t)} t USING jsonb_to_recordset($1::jsonb) AS k(${keyDefs(t)}) WHERE ${identityMatch(t, 't', 'k')}`, [keysJson]),
  );
}

/**
 * How many bytes of a table's rows may wait in memory for the target's
 * DELETE to end (see deleteThenCopy); past it the source is held back (its
 * COPY waits on the socket), so a batch of wide rows costs no more memory.
 */
const PREFETCH_BYTES = 16 * 1024 * 1024;

/**
 * Deletes a batch's keys on the target (`del`) while the source already
 * sends the current rows of the keys `keysSql` selects (as its shape says),
 * then copies the rows in: the source's row fetch and the target's DELETE
 * run at once, each on its own server, instead of one after the other. The
 * rows sent meanwhile wait here, up to PREFETCH_BYTES.
 *
 * If the DELETE fails, the rows are read to their end and dropped, so the
 * source's connection can take the next query (a multi-master run goes on
 * with its other receivers after one's serialization failure), and the
 * DELETE's error is thrown. If the COPY fails, the source's connection is
 * ended, as by copyBetween.
 *
 * With `phases`: targetDelete is the DELETE's time; the source's time
 * until its last row is rowFetchUnderDelete as far as the DELETE ran, and
 * rowFetch beyond it; copyIn is the rest.
 */
async function deleteThenCopy(
  source: pg.ClientBase,
  target: pg.ClientBase,
  t: TableMeta,
  keysSql: string,
  indexed: boolean,
  del: () => Promise<unknown>,
  phases?: ApplyPhases,
): Promise<number> {
  const cols = t.columns.map(quoteIdent).join(', ');
  const rowsSql = `SELECT ${selectItems(t, t.columns, 's')} FROM ${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} s
                    WHERE ${amongKeys(t, keysSql)}${andFilter(t)}`;
  let delError: { err: unknown } | undefined;
  const rows = await joinsFor(source, t, indexed, async () => {
    const began = performance.now();
    const out = source.query(copyTo(`COPY (${rowsSql}) TO STDOUT`));
    // Both sides of the PassThrough buffer up to their mark: half each.
    const held = new PassThrough({ highWaterMark: PREFETCH_BYTES / 2 });
    let fetchedAt = 0;
    out.once('end', () => void (fetchedAt = performance.now()));
    const fetching = pipeline(out, held);
    // Observed below; until then a failed fetch must not count as an unhandled rejection.
    fetching.catch(() => {});
    try {
      await timed(phases, 'targetDelete', del);
    } catch (err) {
      delError = { err };
      held.resume();
      try {
        await fetching;
      } catch {
        // The source's connection is gone too: no setting to reset there, and the run ends.
        discardConnection(source);
        throw err;
      }
      return 0;
    }
    const deleted = performance.now();
    const into = target.query(copyFrom(`COPY ${targetTable(t)} (${cols}) FROM STDIN`));
    const settled = await Promise.allSettled([fetching, pipeline(held, into)]);
    const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as { code?: string }] : []));
    if (errors.length > 0) {
      discardConnection(source);
      // The side that failed, not the other's "premature close" when the pipeline tore it down.
      throw errors.find((e) => e?.code !== 'ERR_STREAM_PREMATURE_CLOSE') ?? errors[0];
    }
    if (phases) {
      const done = performance.now();
      const fetched = fetchedAt || done;
      phases.rowFetchUnderDelete += Math.min(fetched, deleted) - began;
      phases.rowFetch += Math.max(0, fetched - deleted);
      phases.copyIn += done - Math.max(fetched, deleted);
    }
    return into.rowCount ?? 0;
  });
  if (delError) throw delError.err;
  return rows;
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
    target,
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
    await deleteListedKeys(target, t, json, true);
    return 0;
  }
  return deleteThenCopy(source, target, t, listedKeys(t, json), true, () => deleteListedKeys(target, t, json, true));
}
