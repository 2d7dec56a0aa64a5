import type pg from 'pg';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import { parseTableName } from '../db/table-ref.js';
import type { CopyIndexes } from '../config/types.js';
import type { Logger } from '../util/logger.js';
import type { CloneRequest, CloneTable } from './request.js';

// Large tables copy faster into a table without its indexes, built once
// after the copy than kept up row by row during it (the seeds' indexes
// plugin). Only indexes that back no constraint are dropped: a primary key,
// unique or exclusion constraint keeps its index, and so what relies on it
// (foreign keys, ON CONFLICT) goes on working.

/** Every index, whatever its size: what drop_indexes alone asks for. */
export const EVERY_INDEX = -1;

/** A clone's table: drop its indexes larger than this many bytes (EVERY_INDEX: every one), or null: keep them all. */
export function dropAboveOf(req: CloneRequest, t: CloneTable): number | null {
  if (!req.dropIndexes) return null;
  return t.drop_indexes_above === undefined ? EVERY_INDEX : t.drop_indexes_above;
}

/** A sync's copy_indexes for one table: the table's own drop_above, else the sync's, else none (null). */
export function copyIndexesFor(ci: CopyIndexes, t: TableName): number | null {
  const label = tableLabel(t);
  const own = Object.entries(ci.tables).find(([ref]) => tableLabel(parseTableName(ref)) === label);
  return own?.[1].dropAbove ?? ci.dropAbove;
}

export interface DroppedIndex {
  name: string;
  def: string;
  bytes: number;
}

/**
 * Drops the table's indexes larger than `above` bytes that back no
 * constraint (a partitioned index counts its partitions' sizes); returns
 * them with their definitions, to be run again after the copy in the same
 * transaction (rebuildIndexes).
 */
export async function dropIndexes(client: pg.ClientBase, t: TableName, above: number, log: Logger): Promise<DroppedIndex[]> {
  const r = await client.query<{ name: string; def: string; bytes: string }>(
    `SELECT * FROM (
       SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def,
              CASE WHEN c.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0) FROM pg_partition_tree(i.indexrelid) p)
                   ELSE pg_relation_size(i.indexrelid) END AS bytes
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = to_regclass($1) AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     ) x WHERE bytes > $2 ORDER BY name`,
    [quoteTable(t), above],
  );
  const dropped = r.rows.map((ix) => ({ name: ix.name, def: ix.def, bytes: Number(ix.bytes) }));
  for (const ix of dropped) await client.query(`DROP INDEX ${ix.name}`);
  if (dropped.length > 0) {
    log.info(
      { table: tableLabel(t), indexes: dropped.map((ix) => ix.name), bytes: dropped.reduce((n, ix) => n + ix.bytes, 0) },
      'clone: indexes dropped for the copy',
    );
  }
  return dropped;
}

/** Builds the dropped indexes again, one by one, logging each. */
export async function rebuildIndexes(client: pg.ClientBase, t: TableName, dropped: DroppedIndex[], log: Logger): Promise<void> {
  for (const [i, ix] of dropped.entries()) {
    const started = Date.now();
    await client.query(ix.def);
    log.info({ table: tableLabel(t), index: ix.name, of: `${i + 1}/${dropped.length}`, ms: Date.now() - started }, 'clone: index rebuilt');
  }
}
