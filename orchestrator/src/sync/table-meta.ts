import type pg from 'pg';
import { CapraError } from '../util/errors.js';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import type { TableShape } from './table-shape.js';

/** A replicated table as a run sees it: its name, key, and the columns that are written. */
export interface TableMeta extends TableName {
  relid: number;
  keyCols: string[];
  /**
   * The key columns' types as the source session names them (format_type), for
   * reading keys back out of the delta log there.
   */
  keyTypes: string[];
  /** Columns to copy, in the target's order: not dropped, not generated. */
  columns: string[];
  /** Partitioned on the source / on the target: read or emptied through the parent with its partitions, not ONLY the parent. */
  partitioned: boolean;
  targetPartitioned: boolean;
  /** The source's estimate of the table's rows (see TableRow.estimatedRows). */
  estimatedRows: number;
  /** Its tables.options, checked (table-shape.ts); none: the same table, columns and rows on the target. */
  shape?: TableShape;
}

/** A table as the catalog of one node describes it. */
export interface TableRow {
  relid: number;
  schema: string;
  table: string;
  columns: string[];
  partitioned: boolean;
  /** Source side only: every column's type, by name. */
  types?: Record<string, string>;
  /**
   * Source side only: the table's rows as the planner last estimated them
   * (pg_class.reltuples, summed over the leaf partitions of a partitioned
   * table: an analyzed parent has the whole table's figure too; from its
   * size when never analyzed), for choosing how a batch's keys are
   * looked up (see useKeyIndex in apply.ts).
   */
  estimatedRows?: number;
}

const columnsSql = `ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                      ORDER BY a.attnum) AS columns`;

/** Source side: tables by relid, as registered for the consumer. */
export async function sourceTables(client: pg.ClientBase, relids: number[]): Promise<Map<number, TableRow>> {
  const { rows } = await client.query<TableRow>(
    `SELECT c.oid::int AS relid, n.nspname AS schema, c.relname AS table, c.relkind = 'p' AS partitioned, ${columnsSql},
            (SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS types,
            (SELECT coalesce(sum(CASE WHEN p.reltuples > 0 THEN p.reltuples ELSE pg_relation_size(p.oid) / 100 END), 0)::float8
               FROM pg_class p WHERE (p.oid = c.oid AND c.relkind <> 'p') OR p.oid IN (SELECT t.relid FROM pg_partition_tree(c.oid) t WHERE t.isleaf)) AS "estimatedRows"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY ($1::oid[])`,
    [relids],
  );
  return new Map(rows.map((r) => [r.relid, r]));
}

/**
 * Target side: the same tables by name; every source table must exist with
 * the same columns. A table with a shape (by source relid) is found by its
 * target name and must have the columns the shape writes (others it may
 * have, left to their defaults).
 */
export async function matchOnTarget(
  client: pg.ClientBase,
  source: Map<number, TableRow>,
  keys: Map<number, string[]>,
  targetName: string,
  shapes?: Map<number, TableShape>,
): Promise<TableMeta[]> {
  const src = [...source.values()];
  const onTarget = (s: TableRow): TableName => shapes?.get(s.relid)?.target ?? s;
  const { rows } = await client.query<TableRow & { name: string }>(
    `SELECT u.name, c.oid::int AS relid, n.nspname AS schema, c.relname AS table, c.relkind = 'p' AS partitioned, ${columnsSql}
       FROM unnest($1::text[]) AS u(name)
       JOIN pg_class c ON c.oid = to_regclass(u.name)
       JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [src.map((s) => quoteTable(onTarget(s)))],
  );
  const byName = new Map(rows.map((r) => [r.name, r]));
  return src.map((s) => {
    const shape = shapes?.get(s.relid);
    const t = byName.get(quoteTable(onTarget(s)));
    if (!t) {
      const as = shape?.target ? ` as ${tableLabel(shape.target)}` : '';
      throw new CapraError(`table ${tableLabel(s)} does not exist${as} on ${targetName}`, { table: tableLabel(s) });
    }
    if (shape) return shapedMeta(s, t, shape, keys, targetName);
    const missing = t.columns.filter((c) => !s.columns.includes(c));
    const extra = s.columns.filter((c) => !t.columns.includes(c));
    if (missing.length > 0 || extra.length > 0) {
      const parts = [];
      if (extra.length > 0) parts.push(`only on the source: ${extra.join(', ')}`);
      if (missing.length > 0) parts.push(`only on ${targetName}: ${missing.join(', ')}`);
      throw new CapraError(`table ${tableLabel(s)}: columns differ between nodes (${parts.join('; ')}); add them on every node`, {
        table: tableLabel(s),
      });
    }
    return metaOf(s, t, keys, t.columns);
  });
}

/** The TableMeta of source table `s` written into target table `t`'s `columns`. */
function metaOf(s: TableRow, t: TableRow, keys: Map<number, string[]>, columns: string[], shape?: TableShape): TableMeta {
  const meta: TableMeta = {
    schema: s.schema,
    table: s.table,
    relid: s.relid,
    ...keysOf(s, keys),
    columns,
    partitioned: s.partitioned,
    targetPartitioned: t.partitioned,
    estimatedRows: s.estimatedRows ?? 0,
  };
  return shape ? { ...meta, shape } : meta;
}

function keysOf(s: TableRow, keys: Map<number, string[]>): { keyCols: string[]; keyTypes: string[] } {
  const keyCols = keys.get(s.relid) ?? [];
  const keyTypes = keyCols.map((k) => {
    const type = s.types?.[k];
    if (type === undefined) throw new CapraError(`table ${tableLabel(s)}: key column ${JSON.stringify(k)} does not exist on the source`);
    return type;
  });
  return { keyCols, keyTypes };
}

/** A shaped table: the target must have every column the shape writes. */
function shapedMeta(s: TableRow, t: TableRow, shape: TableShape, keys: Map<number, string[]>, targetName: string): TableMeta {
  const missing = shape.written.filter((c) => !t.columns.includes(c));
  if (missing.length > 0) {
    throw new CapraError(
      `table ${tableLabel(s)}: ${tableLabel(t)} on ${targetName} lacks column(s) ${missing.join(', ')} that tables.options writes: add them there`,
      { table: tableLabel(s) },
    );
  }
  return metaOf(s, t, keys, shape.written, shape);
}
