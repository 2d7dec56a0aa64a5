import type pg from 'pg';
import type { TableSelection } from '../config/types.js';
import { CapraError } from '../util/errors.js';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import { SYSTEM_SCHEMAS, matches, parseTableName, tableSelector } from '../db/table-ref.js';
import { optionsFor, parseOptionsKey } from '../config/table-options.js';
import { checkShape, shapeProblemLine } from '../sync/shape-check.js';
import type { TableShape } from '../sync/table-shape.js';

export interface TrackedTable extends TableName {
  /** The key; with a whole-row identity (shape.fullRow), every column replicated as it is. */
  keyCols: string[];
  /** Its tables.options, checked against the table; none: replicated as it is. */
  shape?: TableShape;
}

/** What add-triggers resolves of a sync's selection on its first source. */
export interface ResolvedSelection {
  /** Captured tables. */
  tables: TrackedTable[];
  /** Tables copied whole on a schedule (tables.options fullcopy), not captured. */
  fullcopy: TrackedTable[];
  /** Every problem found, one line each, naming the table: nothing is set up while there is one. */
  problems: string[];
}

/**
 * The tables a selection names on one database, each with its key: the
 * primary key, or the unique index the config names for it. A table with
 * neither is refused, by name. Throws every problem found, in one message.
 */
export async function resolveTables(client: pg.ClientBase, sel: TableSelection, dbName: string, multiMaster = false): Promise<TrackedTable[]> {
  const r = await resolveSelection(client, sel, dbName, multiMaster);
  if (r.problems.length > 0) throw new CapraError(r.problems.join('; '));
  return r.tables;
}

/**
 * The selection resolved on one database, checking every table before
 * giving up: each one's key (or whole-row identity, or fullcopy) and its
 * options (shape-check.ts), so that one run reports every problem.
 */
export async function resolveSelection(client: pg.ClientBase, sel: TableSelection, dbName: string, multiMaster = false): Promise<ResolvedSelection> {
  const problems: string[] = [];
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
    if (r.table !== null) problems.push(`table ${tableLabel({ schema: r.schema, table: r.table })} named in tables.include does not exist on ${dbName}`);
    else
      problems.push(
        `schema ${JSON.stringify(r.schema)} named in tables.include has no tables on ${dbName} (a bare name is a schema; write schema.table for a table)`,
      );
  }
  for (const ref of Object.keys(sel.options ?? {})) {
    const t = parseOptionsKey(ref);
    if (!chosen.some((c) => c.schema === t.schema && c.table === t.table))
      problems.push(`table ${tableLabel(t)} named in tables.options is not in the sync's selection on ${dbName}: include it, or remove its options`);
  }
  const keyIndex = new Map<string, string>();
  for (const [ref, idx] of Object.entries(sel.keys)) keyIndex.set(tableLabel(parseTableName(ref)), idx);
  const out: ResolvedSelection = { tables: [], fullcopy: [], problems };
  for (const t of chosen) {
    const o = optionsFor(sel.options ?? {}, t);
    const name = { schema: t.schema, table: t.table };
    let keyCols: string[] | null = [];
    if (o?.fullcopy === undefined) {
      try {
        keyCols = o?.identity === 'full' ? null : await keyColumns(client, t.oid, t, keyIndex.get(tableLabel(t)), dbName, multiMaster);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
    }
    if (!o) {
      out.tables.push({ ...name, keyCols: keyCols! });
      continue;
    }
    const checked = await checkShape(client, t, o, keyCols);
    if (!checked.shape) {
      problems.push(...checked.problems.map((p) => shapeProblemLine(t, dbName, `tables.options ${p}`)));
      continue;
    }
    (o.fullcopy === undefined ? out.tables : out.fullcopy).push({ ...name, keyCols: checked.identity, shape: checked.shape });
  }
  return out;
}

async function keyColumns(
  client: pg.ClientBase,
  oid: number,
  t: TableName,
  indexName: string | undefined,
  dbName: string,
  multiMaster: boolean,
): Promise<string[]> {
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
    const other = multiMaster
      ? ' (a multi-master sync needs a key; identity: full or fullcopy under tables.options replicate a keyless table in a one-way sync)'
      : ', or give it identity: full (whole row as key) or fullcopy: <cron> (copied whole on a schedule) under tables.options';
    throw new CapraError(
      `table ${tableLabel(t)} on ${dbName} has no primary key: add one, exclude the table, or name a unique index on NOT NULL columns under tables.keys${other}`,
    );
  }
  return pk.cols;
}

/**
 * The problems of a table on another node of the sync: it must exist (under
 * its target name when it has one) with the key columns, and with every
 * column its shape writes.
 */
export async function tableProblemsOn(client: pg.ClientBase, t: TrackedTable, dbName: string): Promise<string[]> {
  const at = t.shape?.target ?? t;
  const as = t.shape?.target ? ` as ${tableLabel(at)}` : '';
  const { rows } = await client.query<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [quoteTable(at)]);
  if (rows[0]?.oid == null) return [`table ${tableLabel(t)} does not exist${as} on ${dbName}: create it there first`];
  const wanted = t.shape ? t.shape.written : t.keyCols;
  const cols = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname = ANY ($2::text[])`,
    [rows[0].oid, wanted],
  );
  const missing = wanted.filter((k) => !cols.rows.some((c) => c.name === k)).join(', ');
  if (missing === '') return [];
  if (t.shape) return [`table ${tableLabel(t)}${as} on ${dbName} lacks column(s) ${missing} that tables.options writes: add them there`];
  return [`table ${tableLabel(t)} on ${dbName} lacks key column(s) ${missing}: the key must exist on every node of the sync`];
}
