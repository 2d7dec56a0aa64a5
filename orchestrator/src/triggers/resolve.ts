import type pg from 'pg';
import type { TableSelection } from '../config/types.js';
import { CapraError } from '../util/errors.js';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import { SYSTEM_SCHEMAS, matches, parseTableName, tableSelector } from '../db/table-ref.js';

export interface TrackedTable extends TableName {
  keyCols: string[];
}

/**
 * The tables a selection names on one database, each with its key: the
 * primary key, or the unique index the config names for it. A table with
 * neither is refused, by name.
 */
export async function resolveTables(client: pg.ClientBase, sel: TableSelection, dbName: string): Promise<TrackedTable[]> {
  const selector = tableSelector(sel);
  const { include } = selector;
  const { rows: rels } = await client.query<{ oid: number; schema: string; table: string; sequence: boolean }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS table, c.relkind = 'S' AS sequence
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (c.relkind IN ('r', 'p') AND NOT c.relispartition OR c.relkind = 'S' AND c.relpersistence <> 't')
        AND n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
      ORDER BY n.nspname, c.relname`,
    [SYSTEM_SCHEMAS],
  );
  // Sequences are carried by sync/sequences.ts; an include entry may name one.
  const rows = rels.filter((r) => !r.sequence);
  const chosen = rows.filter((t) => selector.selected(t));
  // Every include entry must match something: a typo should not silently replicate nothing.
  for (const r of include) {
    if (r.table !== null ? rels.some((t) => matches(r, t)) : rows.some((t) => matches(r, t))) continue;
    if (r.table !== null) throw new CapraError(`table ${tableLabel({ schema: r.schema, table: r.table })} named in tables.include does not exist on ${dbName}`);
    throw new CapraError(
      `schema ${JSON.stringify(r.schema)} named in tables.include has no tables on ${dbName} (a bare name is a schema; write schema.table for a table)`,
    );
  }
  const keyIndex = new Map<string, string>();
  for (const [ref, idx] of Object.entries(sel.keys)) keyIndex.set(tableLabel(parseTableName(ref)), idx);
  const out: TrackedTable[] = [];
  for (const t of chosen) {
    out.push({ schema: t.schema, table: t.table, keyCols: await keyColumns(client, t.oid, t, keyIndex.get(tableLabel(t)), dbName) });
  }
  return out;
}

async function keyColumns(client: pg.ClientBase, oid: number, t: TableName, indexName: string | undefined, dbName: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string; primary: boolean; usable: boolean; cols: string[] }>(
    `SELECT ic.relname AS name, i.indisprimary AS primary,
            (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
             AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) k
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k
                             WHERE NOT a.attnotnull)) AS usable,
            ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) AS cols
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = $1`,
    [oid],
  );
  if (indexName !== undefined) {
    const idx = rows.find((r) => r.name === indexName);
    if (!idx) throw new CapraError(`table ${tableLabel(t)} on ${dbName}: index ${JSON.stringify(indexName)} named in tables.keys does not exist`);
    if (!idx.usable) {
      throw new CapraError(`table ${tableLabel(t)} on ${dbName}: index ${JSON.stringify(indexName)} is not a plain unique index on NOT NULL columns`);
    }
    return idx.cols;
  }
  const pk = rows.find((r) => r.primary);
  if (!pk) {
    throw new CapraError(
      `table ${tableLabel(t)} on ${dbName} has no primary key: add one, exclude the table, or name a unique index on NOT NULL columns under tables.keys`,
    );
  }
  return pk.cols;
}

/** Checks that a table exists on another node of the sync with the same key columns. */
export async function checkTableOn(client: pg.ClientBase, t: TrackedTable, dbName: string): Promise<void> {
  const { rows } = await client.query<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [quoteTable(t)]);
  if (rows[0]?.oid == null) throw new CapraError(`table ${tableLabel(t)} does not exist on ${dbName}: create it there first`);
  const cols = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname = ANY ($2::text[])`,
    [rows[0].oid, t.keyCols],
  );
  if (cols.rows.length !== t.keyCols.length) {
    const missing = t.keyCols.filter((k) => !cols.rows.some((c) => c.name === k)).join(', ');
    throw new CapraError(`table ${tableLabel(t)} on ${dbName} lacks key column(s) ${missing}: the key must exist on every node of the sync`);
  }
}
