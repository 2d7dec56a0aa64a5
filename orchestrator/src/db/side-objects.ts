import type pg from 'pg';
import { quoteIdent } from './ident.js';

/**
 * What each side of schema `repl` consists of, as data: install records in
 * repl.<side>_object what appeared in the schema while it ran the side's
 * migrations and extension files, and every function those files created or
 * replaced (migrations/<side>/000004 creates the record and lists the tables
 * of earlier installs); uninstall drops what is recorded there and still
 * exists, and nothing the other side recorded too. So a function added to
 * extension/ later is dropped without anyone naming it, and no file is read
 * to find out.
 */

export interface SchemaObject {
  kind: Kind;
  name: string;
  /** A routine's argument types as PostgreSQL writes them (pg_get_function_identity_arguments); '' for the rest. */
  args: string;
}

// Dropped in this order: views may call routines, routines may take a table's row type, tables may use sequences and types.
const DROP_ORDER = ['view', 'materialized view', 'routine', 'foreign table', 'table', 'sequence', 'type', 'domain'] as const;
type Kind = (typeof DROP_ORDER)[number];
const DROP_KEYWORD: Record<Kind, string> = {
  view: 'VIEW',
  'materialized view': 'MATERIALIZED VIEW',
  routine: 'ROUTINE',
  'foreign table': 'FOREIGN TABLE',
  table: 'TABLE',
  sequence: 'SEQUENCE',
  type: 'TYPE',
  domain: 'DOMAIN',
};

export function registryTable(side: string): string {
  return `${side}_object`;
}

/**
 * The objects of `schema` that can be dropped on their own: not indexes, a
 * table's identity or serial sequence, a partition, or a table's row type,
 * which go with what owns them. Left out too: the per-table functions and
 * kick clocks that add-triggers generates (capture_<oid>, kick_<oid>,
 * kick_clock_<oid>), which come and go with the triggers, whoever installs.
 */
export async function schemaObjects(client: pg.ClientBase, schema: string): Promise<SchemaObject[]> {
  const r = await client.query<SchemaObject>(
    `WITH n AS (SELECT oid FROM pg_namespace WHERE nspname = $1)
     SELECT kind, name, args FROM (
       SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                             WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type' END AS kind,
              c.relname::text AS name, '' AS args
         FROM pg_class c JOIN n ON c.relnamespace = n.oid
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
       UNION ALL
       SELECT 'routine', p.proname::text, pg_get_function_identity_arguments(p.oid)
         FROM pg_proc p JOIN n ON p.pronamespace = n.oid
       UNION ALL
       SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, t.typname::text, ''
         FROM pg_type t JOIN n ON t.typnamespace = n.oid
        WHERE t.typtype IN ('d', 'e', 'r')
     ) o
     WHERE name !~ '^(capture|kick|kick_clock)_[0-9]+$'
     ORDER BY kind, name, args`,
    [schema],
  );
  return r.rows;
}

/**
 * The routines of `schema` whose catalog row this transaction wrote. CREATE
 * OR REPLACE rewrites the row even when nothing changed, so after a side's
 * extension files have run these are exactly its functions, including on a
 * database installed before the record existed.
 */
export async function routinesWritten(client: pg.ClientBase, schema: string): Promise<SchemaObject[]> {
  const r = await client.query<SchemaObject>(
    `SELECT 'routine' AS kind, p.proname::text AS name, pg_get_function_identity_arguments(p.oid) AS args
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.xmin = pg_current_xact_id()::xid AND p.proname !~ '^(capture|kick)_[0-9]+$'`,
    [schema],
  );
  return r.rows;
}

const keyOf = (o: SchemaObject): string => JSON.stringify([o.kind, o.name, o.args]);

/** The objects in `after` that were not in `before`. */
export function added(before: SchemaObject[], after: SchemaObject[]): SchemaObject[] {
  const had = new Set(before.map(keyOf));
  return after.filter((o) => !had.has(keyOf(o)));
}

/** Adds `objects` to the side's record (which the side's migrations created). */
export async function record(client: pg.ClientBase, schema: string, side: string, found: SchemaObject[]): Promise<void> {
  const objects = [...new Map(found.map((o) => [keyOf(o), o])).values()];
  if (objects.length === 0) return;
  await client.query(
    `INSERT INTO ${quoteIdent(schema)}.${quoteIdent(registryTable(side))} (kind, name, args)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`,
    [objects.map((o) => o.kind), objects.map((o) => o.name), objects.map((o) => o.args)],
  );
}

/** The side's record; none when the side (or its record) is not there. */
export async function recorded(client: pg.ClientBase, schema: string, side: string): Promise<SchemaObject[]> {
  const table = `${quoteIdent(schema)}.${quoteIdent(registryTable(side))}`;
  const exists = await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [table]);
  if (exists.rows[0].ok !== true) return [];
  return (await client.query<SchemaObject>(`SELECT kind, name, args FROM ${table}`)).rows;
}

/**
 * Drops the objects of `schema` that `side` recorded and `other` did not,
 * one statement per kind (so tables that reference each other go together),
 * named from the live catalog (a routine's argument list as PostgreSQL
 * writes it, not as the record holds it). Nothing cascades: an object of the
 * user's that depends on ours makes this fail rather than disappear.
 */
export async function dropRecorded(client: pg.ClientBase, schema: string, side: string, other: string): Promise<void> {
  const mine = new Set((await recorded(client, schema, side)).map(keyOf));
  const theirs = new Set((await recorded(client, schema, other)).map(keyOf));
  const live = (await schemaObjects(client, schema)).filter((o) => mine.has(keyOf(o)) && !theirs.has(keyOf(o)));
  for (const kind of DROP_ORDER) {
    const names = live.filter((o) => o.kind === kind).map((o) => `${quoteIdent(schema)}.${quoteIdent(o.name)}${kind === 'routine' ? `(${o.args})` : ''}`);
    if (names.length > 0) await client.query(`DROP ${DROP_KEYWORD[kind]} IF EXISTS ${names.join(', ')}`);
  }
}
