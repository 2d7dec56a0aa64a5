import type { TableName } from './ident.js';

/**
 * Parses the table references of the config: `schema`, `schema.table`, or a
 * bare `table` (schema public). Names are exact (no case folding); a part that
 * contains a dot or a double quote is written in double quotes, as in SQL:
 * `"My Schema"."odd ""name"""`.
 */
export interface TableRef {
  schema: string;
  table: string | null;
}

export function splitQualified(ref: string): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i <= ref.length) {
    let part = '';
    if (ref[i] === '"') {
      i++;
      for (;;) {
        if (i >= ref.length) throw new Error(`unterminated quote in ${JSON.stringify(ref)}`);
        if (ref[i] === '"') {
          if (ref[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += ref[i++];
      }
      if (i < ref.length && ref[i] !== '.') throw new Error(`unexpected text after a quoted name in ${JSON.stringify(ref)}`);
    } else {
      const dot = ref.indexOf('.', i);
      const end = dot === -1 ? ref.length : dot;
      part = ref.slice(i, end);
      if (part.includes('"')) throw new Error(`stray double quote in ${JSON.stringify(ref)}`);
      i = end;
    }
    if (part === '') throw new Error(`empty name in ${JSON.stringify(ref)}`);
    parts.push(part);
    i++; // skip the dot
  }
  return parts;
}

/** An include/exclude entry: a schema, or schema.table. */
export function parseSelector(ref: string): TableRef {
  const parts = splitQualified(ref);
  if (parts.length === 1) return { schema: parts[0]!, table: null };
  if (parts.length === 2) return { schema: parts[0]!, table: parts[1]! };
  throw new Error(`expected schema or schema.table, got ${JSON.stringify(ref)}`);
}

/** A table name: table (in public) or schema.table. */
export function parseTableName(ref: string): TableName {
  const parts = splitQualified(ref);
  if (parts.length === 1) return { schema: 'public', table: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, table: parts[1]! };
  throw new Error(`expected table or schema.table, got ${JSON.stringify(ref)}`);
}

export function matches(ref: TableRef, t: TableName): boolean {
  return ref.schema === t.schema && (ref.table === null || ref.table === t.table);
}

/** Schemas whose tables and sequences are never replicated: the system's and Capra's own. */
export const SYSTEM_SCHEMAS = ['pg_catalog', 'information_schema', 'pg_toast', 'repl'];

/** A sync's table selection, parsed, with the one include/exclude rule. */
export interface Selector {
  include: TableRef[];
  exclude: TableRef[];
  /** Included (or include is empty) and not excluded. */
  selected(t: TableName): boolean;
}

export function tableSelector(sel: { include: readonly string[]; exclude: readonly string[] }): Selector {
  const include = sel.include.map(parseSelector);
  const exclude = sel.exclude.map(parseSelector);
  return {
    include,
    exclude,
    selected: (t) => (include.length === 0 || include.some((r) => matches(r, t))) && !exclude.some((r) => matches(r, t)),
  };
}
