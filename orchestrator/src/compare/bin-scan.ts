import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { onlyUnlessPartitioned, quoteIdent, quoteTable } from '../db/ident.js';
import type { TableMeta } from '../sync/table-meta.js';
import { ChunkSizer } from './chunk-size.js';
import { type Key, type KeyRange, type RangeHash, rowHashValue } from './key-sql.js';

/**
 * Compare's first pass over a table: bin bounds sampled from the reference's
 * values of the key's first column, then every node reads its table once,
 * sequentially, in pieces of pages, dropping each row into the bin of its
 * first key column (width_bucket over the bounds, in that column's
 * collation: bin i holds bounds[i-1] <= k1 < bounds[i], the ranges narrow.ts
 * then reads by the key's index, a bound being a one-column prefix of the
 * key) and summing the bins' 64-bit row hashes. A sum does not depend on the
 * order rows are read in, so pieces add up and a sequential scan will do;
 * it is exact (numeric), and two rows cannot cancel out as they would in an
 * xor. Where the first column has few values the bins are few and large:
 * still one read of each row, but a differing bin costs more to narrow.
 * Pieces are ranges of pages (a TID range scan, PostgreSQL 14 and later),
 * sized so that each takes about 250 ms, as pt-table-checksum sizes its
 * chunks; before 14 a page range would be a filtered scan of the whole
 * table, so a node reads its table in one piece.
 */

/** Rows per bin aimed at: where narrowing starts when a bin differs. */
const BIN_ROWS = 1_000;
/** Bins at most: the bounds travel with every piece. */
const MAX_BINS = 10_000;
/** Sampled keys per bin, for even bins. */
const SAMPLE_PER_BIN = 10;

/** A table's size in pages (the largest partition's for a partitioned one) and its estimated rows. */
export interface TableSize {
  pages: number;
  rows: number;
  /** TID range scans exist (PostgreSQL 14 and later). */
  tidRanges: boolean;
}

export async function tableSize(c: pg.ClientBase, t: TableMeta): Promise<TableSize> {
  const r = await c.query<{ pages: string; rows: number; major: number }>(
    `WITH parts AS (
       SELECT c.oid, c.relpages, c.reltuples FROM pg_class c
        WHERE c.oid = to_regclass($1) AND c.relkind <> 'p'
           OR $2 AND c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass($1)) WHERE isleaf))
     SELECT coalesce(max(pg_relation_size(oid) / current_setting('block_size')::int), 0)::text AS pages,
            coalesce(sum(CASE WHEN relpages > 0 AND reltuples > 0 THEN reltuples / relpages * (pg_relation_size(oid) / current_setting('block_size')::int)
                              ELSE pg_relation_size(oid) / current_setting('block_size')::int * 50 END), 0)::float8 AS rows,
            current_setting('server_version_num')::int / 10000 AS major
       FROM parts`,
    [quoteTable(t), t.partitioned],
  );
  const x = r.rows[0]!;
  return { pages: Number(x.pages), rows: x.rows, tidRanges: x.major >= 14 };
}

/** The bins' bounds for `t` of `size` (on the reference), from a sample of its keys' first column: ascending, distinct, as text. */
export async function binBounds(c: pg.ClientBase, t: TableMeta, size: TableSize): Promise<Key[]> {
  const bins = Math.min(MAX_BINS, Math.ceil(size.rows / BIN_ROWS));
  if (bins <= 1) return [];
  const percent = Math.min(100, ((bins * SAMPLE_PER_BIN) / size.rows) * 100);
  const k = quoteIdent(t.keyCols[0]!);
  const r = await c.query<{ k: string }>(
    `SELECT k::text AS k FROM (SELECT DISTINCT s.${k} AS k FROM ${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} s TABLESAMPLE SYSTEM ($1)) q ORDER BY q.k`,
    [percent],
  );
  // The sample is distinct: a bound repeats only where there are fewer sampled values than bins.
  const step = r.rows.length / bins;
  const bounds: Key[] = [];
  for (let i = 1; i < bins; i++) {
    const at = Math.floor(i * step);
    if (at > 0 && at < r.rows.length && r.rows[at]!.k !== bounds.at(-1)?.[0]) bounds.push([r.rows[at]!.k]);
  }
  return bounds;
}

/** The range of bin `i`: from bound i-1 (open below the first) up to bound i (open above the last). */
export const binRange = (bounds: Key[], i: number): KeyRange => ({ lo: i === 0 ? null : bounds[i - 1]!, hi: i >= bounds.length ? null : bounds[i]! });

/** Each bin's rows and the sum of their row hashes (as text), by bin number. */
export type Bins = Map<number, RangeHash>;

/** Reads `t` of `size` on one node once, into the bins of `bounds`; `progress` gets the rows of each piece as it is read. */
export async function scanBins(c: pg.ClientBase, t: TableMeta, size: TableSize, bounds: Key[], progress?: (rows: number) => void): Promise<Bins> {
  const params: unknown[] = [bounds.map((b) => b[0]!)];
  const sql = (where: string): string =>
    `SELECT width_bucket(s.${quoteIdent(t.keyCols[0]!)}, $1::text[]::${t.keyTypes[0]}[]) AS b, count(*)::int AS n, sum(${rowHashValue(t)})::text AS h
       FROM ${onlyUnlessPartitioned(t.partitioned)}${quoteTable(t)} s WHERE ${where} GROUP BY 1`;
  const sums = new Map<number, { rows: number; sum: bigint }>();
  const add = (rows: { b: number; n: number; h: string }[]): void => {
    let n = 0;
    for (const x of rows) {
      const bin = sums.get(x.b) ?? { rows: 0, sum: 0n };
      bin.rows += x.n;
      bin.sum += BigInt(x.h);
      sums.set(x.b, bin);
      n += x.n;
    }
    progress?.(n);
  };
  if (!size.tidRanges) {
    add((await c.query<{ b: number; n: number; h: string }>(sql('true'), params)).rows);
  } else {
    // Pages up to the size read after the snapshot was taken: a row the snapshot sees was committed in a page that existed then.
    const sizer = new ChunkSizer();
    for (let page = 0; page < size.pages; ) {
      const upto = Math.min(size.pages, page + sizer.size);
      const began = performance.now();
      const q = await c.query<{ b: number; n: number; h: string }>(sql(`s.ctid >= $2::tid AND s.ctid < $3::tid`), [...params, `(${page},0)`, `(${upto},0)`]);
      sizer.observe(upto - page, performance.now() - began);
      add(q.rows);
      page = upto;
    }
  }
  return new Map([...sums].map(([b, x]) => [b, { rows: x.rows, hash: x.sum.toString() }]));
}
