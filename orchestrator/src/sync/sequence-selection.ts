import type pg from 'pg';
import type { TableSelection } from '../config/types.js';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import { SYSTEM_SCHEMAS, tableSelector } from '../db/table-ref.js';

/** Which sequences a sync carries on one database, chosen by the sync's table selection. */

export interface SequenceName {
  schema: string;
  name: string;
}

export const sequenceLabel = (s: SequenceName): string => tableLabel({ schema: s.schema, table: s.name });
export const quoteSequence = (s: SequenceName): string => quoteTable({ schema: s.schema, table: s.name });

interface ListedSequence extends SequenceName {
  /** The table whose serial or identity column owns it. */
  owner: TableName | null;
}

async function listSequences(client: pg.ClientBase): Promise<ListedSequence[]> {
  const { rows } = await client.query<{ schema: string; name: string; owner_schema: string | null; owner_table: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, o.schema AS owner_schema, o.table AS owner_table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN LATERAL (
         SELECT tn.nspname AS schema, t.relname AS table
           FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
            AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
          LIMIT 1) o ON true
      WHERE c.relkind = 'S' AND c.relpersistence <> 't' AND n.nspname <> ALL ($1::text[])
      ORDER BY n.nspname, c.relname`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((r) => ({
    schema: r.schema,
    name: r.name,
    owner: r.owner_schema !== null && r.owner_table !== null ? { schema: r.owner_schema, table: r.owner_table } : null,
  }));
}

function carried(listed: ListedSequence[], sel: TableSelection, ownerSelected: (t: TableName) => boolean): SequenceName[] {
  const selector = tableSelector(sel);
  return listed.filter((s) => selector.carries({ schema: s.schema, table: s.name }, s.owner, ownerSelected)).map((s) => ({ schema: s.schema, name: s.name }));
}

/**
 * The sequences a sync carries on one database: those in a schema the
 * selection includes (every non-system schema when include is empty), those
 * named as schema.sequence in include, and those owned by a serial or
 * identity column of one of `tables`; minus what tables.exclude matches,
 * directly or through the table that owns it (tableSelector's carries: a
 * name beats a schema).
 */
export async function resolveSequences(client: pg.ClientBase, sel: TableSelection, tables: readonly TableName[]): Promise<SequenceName[]> {
  const chosen = new Set(tables.map(tableLabel));
  return carried(await listSequences(client), sel, (t) => chosen.has(tableLabel(t)));
}

/** The same, judging owner tables by the selection itself (no key lookups: cheap enough to run every second). */
export async function selectedSequences(client: pg.ClientBase, sel: TableSelection): Promise<SequenceName[]> {
  return carried(await listSequences(client), sel, tableSelector(sel).selected);
}
