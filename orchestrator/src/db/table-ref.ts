import { splitQualified } from '../util/qualified-name.js';
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

/**
 * Where a table stands in a selection: named itself (schema.table) in include
 * or exclude, its schema named (or include empty: every schema is in), or
 * not listed at all.
 */
export type Standing = 'named-in' | 'named-out' | 'schema-in' | 'schema-out' | 'unlisted';

/** A sync's table selection, parsed, with the one include/exclude rule. */
export interface Selector {
  include: TableRef[];
  exclude: TableRef[];
  standing(t: TableName): Standing;
  /**
   * The rule: the more specific entry wins, so a table named in include is
   * replicated even when its schema is excluded, and one named in exclude is
   * left out even when its schema is included; named in both, it is left out.
   */
  selected(t: TableName): boolean;
  /**
   * The same rule for a sequence, which may also follow the table whose
   * serial or identity column owns it: the sequence named itself decides;
   * else its owner named; else either one's schema excluded leaves it out;
   * else it is carried when its schema is in or its owner is selected.
   */
  carries(seq: TableName, owner: TableName | null, ownerSelected: (t: TableName) => boolean): boolean;
}

export function tableSelector(sel: { include: readonly string[]; exclude: readonly string[] }): Selector {
  const include = sel.include.map(parseSelector);
  const exclude = sel.exclude.map(parseSelector);
  const named = (refs: TableRef[], t: TableName): boolean => refs.some((r) => r.table !== null && matches(r, t));
  const schema = (refs: TableRef[], t: TableName): boolean => refs.some((r) => r.table === null && matches(r, t));
  const standing = (t: TableName): Standing => {
    if (named(exclude, t)) return 'named-out';
    if (named(include, t)) return 'named-in';
    if (schema(exclude, t)) return 'schema-out';
    return include.length === 0 || schema(include, t) ? 'schema-in' : 'unlisted';
  };
  const isIn = (s: Standing): boolean => s === 'named-in' || s === 'schema-in';
  return {
    include,
    exclude,
    standing,
    selected: (t) => isIn(standing(t)),
    carries: (seq, owner, ownerSelected) => {
      const own = standing(seq);
      if (own === 'named-in' || own === 'named-out') return own === 'named-in';
      const of = owner === null ? null : standing(owner);
      if (of === 'named-in' || of === 'named-out') return of === 'named-in';
      if (own === 'schema-out' || of === 'schema-out') return false;
      return own === 'schema-in' || (owner !== null && ownerSelected(owner));
    },
  };
}
