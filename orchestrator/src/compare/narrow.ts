import type pg from 'pg';
import type { TableMeta } from '../sync/table-meta.js';
import { type Key, type KeyRange, type RangeHash, hashRange, rowHashes, splitKeys } from './key-sql.js';

/**
 * From a range whose hashes differ between two nodes down to the keys that
 * differ: the range is cut into PIECES pieces at keys of the node that has
 * more rows in it (so rows only one node has are split too), each piece
 * hashed on both, and only the differing pieces are cut again, until a piece
 * is small enough to list its rows' hashes. What travels is proportional to
 * the differences, not to the range.
 */

/** Pieces per cut. */
const PIECES = 16;
/** At most this many rows on either node: list the rows' hashes. */
const LEAF_ROWS = 256;

/** The keys that differ between a reference node and another. */
export interface KeyDiffs {
  /** On the reference, not on the node. */
  missing: Key[];
  /** On the node, not on the reference. */
  extra: Key[];
  different: Key[];
}

export const noDiffs = (): KeyDiffs => ({ missing: [], extra: [], different: [] });

export async function narrow(
  ref: pg.ClientBase,
  node: pg.ClientBase,
  t: TableMeta,
  range: KeyRange,
  refHash: RangeHash,
  nodeHash: RangeHash,
  into: KeyDiffs,
): Promise<void> {
  if (Math.max(refHash.rows, nodeHash.rows) <= LEAF_ROWS) {
    const [a, b] = await Promise.all([rowHashes(ref, t, range), rowHashes(node, t, range)]);
    for (const [id, r] of a) {
      const other = b.get(id);
      if (!other) into.missing.push(r.key);
      else if (other.hash !== r.hash) into.different.push(r.key);
    }
    for (const [id, r] of b) if (!a.has(id)) into.extra.push(r.key);
    return;
  }
  const splitter = refHash.rows >= nodeHash.rows ? ref : node;
  const cuts = await splitKeys(splitter, t, range, Math.ceil(Math.max(refHash.rows, nodeHash.rows) / PIECES));
  const bounds = [range.lo, ...cuts, range.hi];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const piece = { lo: bounds[i]!, hi: bounds[i + 1]! };
    const [a, b] = await Promise.all([hashRange(ref, t, piece), hashRange(node, t, piece)]);
    if (a.rows !== b.rows || a.hash !== b.hash) await narrow(ref, node, t, piece, a, b, into);
  }
}
