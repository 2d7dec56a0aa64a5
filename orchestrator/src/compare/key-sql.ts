import type pg from 'pg';
import { onlyUnlessPartitioned, quoteIdent, quoteTable } from '../db/ident.js';
import type { TableMeta } from '../sync/table-meta.js';

/**
 * The SQL compare runs on every node, built from the reference node's view
 * of a table. Keys travel as arrays of their columns' text (printed in the
 * pinned output formats of the compare's transactions, see snapshots.ts) and
 * come back as parameters cast to the key columns' types; rows are compared
 * by a 64-bit hash of their text form over the columns in name order (the
 * same on every node whatever their physical order; NULL and '' print
 * differently). The hash is hashtextextended, hash partitioning's, which
 * PostgreSQL keeps the same across versions; it costs a third less than md5.
 * A bin of the first pass sums its rows' hashes (bin-scan.ts); a range being
 * narrowed is hashed as the md5 of its rows' hashes in key order.
 */

/** A key: its columns' values as text, in key order. */
export type Key = string[];

/** A key range: from `lo` (inclusive) up to `hi` (exclusive); null is open; a bound may be a prefix of the key. */
export interface KeyRange {
  lo: Key | null;
  hi: Key | null;
}

/** What one node says about a range: its rows and their hash. */
export interface RangeHash {
  rows: number;
  hash: string | null;
}

/** The key as one string, for maps and output. */
export const keyId = (k: Key): string => JSON.stringify(k);

/** The key as an object by column name, for output and the conflict log. */
export function keyObject(t: TableMeta, k: Key): Record<string, string> {
  return Object.fromEntries(t.keyCols.map((c, i) => [c, k[i]!]));
}

const from = (t: TableMeta, alias = 's'): string => `${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} ${alias}`;
const keyList = (t: TableMeta, alias = 's'): string => t.keyCols.map((k) => `${alias}.${quoteIdent(k)}`).join(', ');
/** The key as text[]. */
export const keyArray = (t: TableMeta, alias = 's'): string => `ARRAY[${t.keyCols.map((k) => `${alias}.${quoteIdent(k)}::text`).join(', ')}]`;
/** A row's 64-bit hash (int8). */
export const rowHashValue = (t: TableMeta, alias = 's'): string =>
  `hashtextextended(ROW(${[...t.columns]
    .sort()
    .map((c) => `${alias}.${quoteIdent(c)}`)
    .join(', ')})::text, 0)`;
const rowHash = (t: TableMeta, alias = 's'): string => `${rowHashValue(t, alias)}::text`;

/**
 * `(k1, k2) op (($n::text[])[1]::type1, ...)`: the key compared with a key
 * given as parameter $n, or with a prefix of it (`len` columns: a bin's bound
 * is a value of the first key column alone, see bin-scan.ts).
 */
function versus(t: TableMeta, op: string, n: number, len: number): string {
  const cols = t.keyCols.slice(0, len);
  return `(${cols.map((k) => `s.${quoteIdent(k)}`).join(', ')}) ${op} (${cols.map((_, i) => `($${n}::text[])[${i + 1}]::${t.keyTypes[i]}`).join(', ')})`;
}

/** The range's condition, its key parameters appended to `params`. */
function inRange(t: TableMeta, r: KeyRange, params: unknown[]): string {
  const parts = ['true'];
  if (r.lo) {
    params.push(r.lo);
    parts.push(versus(t, '>=', params.length, r.lo.length));
  }
  if (r.hi) {
    params.push(r.hi);
    parts.push(versus(t, '<', params.length, r.hi.length));
  }
  return parts.join(' AND ');
}

/**
 * The rows of a range and the md5 of their row hashes concatenated in key
 * order: moving, adding or dropping a row changes it, and two equal rows
 * cannot cancel out as they would in a sum or xor.
 */
export async function hashRange(c: pg.ClientBase, t: TableMeta, r: KeyRange): Promise<RangeHash> {
  const params: unknown[] = [];
  const where = inRange(t, r, params);
  // Fed in key order by the ordered subquery (the documented way to order an aggregate's input without sorting in it).
  const q = await c.query<{ n: string; h: string | null }>(
    `SELECT count(*)::text AS n, md5(string_agg(h, ',')) AS h FROM (SELECT ${rowHash(t)} AS h FROM ${from(t)} WHERE ${where} ORDER BY ${keyList(t)}) q`,
    params,
  );
  return { rows: Number(q.rows[0]!.n), hash: q.rows[0]!.h };
}

/** Every `step`-th key of a range: where to split it into pieces of about `step` rows. */
export async function splitKeys(c: pg.ClientBase, t: TableMeta, r: KeyRange, step: number): Promise<Key[]> {
  const params: unknown[] = [];
  const where = inRange(t, r, params);
  params.push(step);
  const q = await c.query<{ k: Key }>(
    `SELECT k FROM (SELECT ${keyArray(t)} AS k, row_number() OVER (ORDER BY ${keyList(t)}) AS i FROM ${from(t)} WHERE ${where}) q
      WHERE i % $${params.length} = 1 AND i > 1 ORDER BY i`,
    params,
  );
  return q.rows.map((x) => x.k);
}

/** Each row of a range: its key and row hash. */
export async function rowHashes(c: pg.ClientBase, t: TableMeta, r: KeyRange): Promise<Map<string, { key: Key; hash: string }>> {
  const params: unknown[] = [];
  const where = inRange(t, r, params);
  const q = await c.query<{ k: Key; h: string }>(`SELECT ${keyArray(t)} AS k, ${rowHash(t)} AS h FROM ${from(t)} WHERE ${where}`, params);
  return new Map(q.rows.map((x) => [keyId(x.k), { key: x.k, hash: x.h }]));
}

/** The rows of `keys` as JSON objects, by key id (absent keys are left out). */
export async function rowsOf(c: pg.ClientBase, t: TableMeta, keys: Key[]): Promise<Map<string, Record<string, unknown>>> {
  if (keys.length === 0) return new Map();
  const q = await c.query<{ k: Key; r: Record<string, unknown> }>(
    `SELECT ${keyArray(t)} AS k, to_jsonb(s) AS r FROM ${from(t)} WHERE (${keyList(t)}) IN
       (SELECT ${t.keyTypes.map((type, i) => `(x.k->>${i})::${type}`).join(', ')} FROM jsonb_array_elements($1::jsonb) AS x(k))`,
    [JSON.stringify(keys)],
  );
  return new Map(q.rows.map((x) => [keyId(x.k), x.r]));
}

/** The table's estimated rows (planner statistics), for progress. */
export async function estimatedRows(c: pg.ClientBase, t: TableMeta): Promise<number> {
  const q = await c.query<{ n: number }>(
    `SELECT greatest(coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0), 0)::float8 AS n FROM pg_class c
      WHERE c.oid = to_regclass($1) OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1))`,
    [quoteTable(t)],
  );
  return q.rows[0]?.n ?? 0;
}
