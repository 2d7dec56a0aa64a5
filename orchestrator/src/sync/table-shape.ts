import { type TableName, quoteIdent, quoteTable } from '../db/ident.js';

/**
 * A table's shape on the targets, from its tables.options once checked
 * against the table (shape-check.ts), and the SQL the apply and the clone
 * write with it. A table without options has no shape: every helper then
 * gives what the apply wrote before shapes existed.
 *
 * Every shape keeps the apply's one rule, "for each key the batch touched,
 * the target takes the source's current rows of that key": the select reads
 * the source's rows through the filter and the expressions, so a row that
 * stops matching is deleted on the targets and one that starts matching is
 * inserted; a whole-row identity takes the whole replicated row as the key,
 * so the target ends up with as many copies of a row as the source has,
 * duplicates included, however often a batch is applied.
 */
export interface TableShape {
  /** The table's name on the targets; null: its own. */
  target: TableName | null;
  /** The target columns written, in order: the replicated source columns, then columns only an expression fills. */
  written: string[];
  /** Target column -> SQL on the source's row, as PostgreSQL deparsed it. */
  expressions: Record<string, string>;
  /** The row filter as PostgreSQL deparsed it; null: every row. */
  where: string | null;
  /** The key is the whole replicated row (identity: full). */
  fullRow: boolean;
}

/** What the helpers need of a table: TableMeta and the clone's table both have it. */
export interface Shaped extends TableName {
  keyCols: string[];
  shape?: TableShape;
}

/** The table on the targets, quoted. */
export function targetTable(t: TableName & { shape?: TableShape }): string {
  return quoteTable(t.shape?.target ?? t);
}

/** The select list over the source's row `alias` that gives the target's `columns`. */
export function selectItems(t: { shape?: TableShape }, columns: string[], alias: string): string {
  const ex = t.shape?.expressions ?? {};
  return columns.map((c) => (c in ex ? `(${ex[c]}) AS ${quoteIdent(c)}` : `${alias}.${quoteIdent(c)}`)).join(', ');
}

/** The row filter as a WHERE clause's further condition (` AND (...)`), or nothing. */
export function andFilter(t: { shape?: TableShape }): string {
  return t.shape?.where ? ` AND (${t.shape.where})` : '';
}

/** The row filter as a whole WHERE clause, or nothing. */
export function whereFilter(t: { shape?: TableShape }): string {
  return t.shape?.where ? ` WHERE (${t.shape.where})` : '';
}

/**
 * A whole row compared as the text of a row value: NULL columns match
 * (ROW(1,NULL) prints `(1,)`, an empty string `(1,"")`), and text equality
 * lets the planner hash-join a batch's rows against the table, which
 * `IS NOT DISTINCT FROM` on each column would not. Both sides print in one
 * session, so a value prints the same on both.
 */
export function rowText(cols: string[], alias: string): string {
  return `ROW(${cols.map((c) => `${alias}.${quoteIdent(c)}`).join(', ')})::text`;
}

/** The join of table `a` with a set `b` of its keys: by each key column, or by the whole row. */
export function identityMatch(t: Shaped, a: string, b: string): string {
  if (t.shape?.fullRow) return `${rowText(t.keyCols, a)} = ${rowText(t.keyCols, b)}`;
  return t.keyCols.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
}

/**
 * The condition that row `alias`'s one-column key is among the keys
 * `keysSql` selects, as one array the key index scans in one pass (see
 * keyArray in apply.ts).
 */
export function keyInArray(t: Shaped, alias: string, keysSql: string): string {
  return `${alias}.${quoteIdent(t.keyCols[0]!)} = ANY (ARRAY(${keysSql}))`;
}

/**
 * The condition on the source's row `s` that it is one of the keys `keysSql`
 * selects (columns named as the key); with `asArray`, as one array (keyInArray).
 */
export function amongKeys(t: Shaped, keysSql: string, asArray = false): string {
  if (t.shape?.fullRow) return `${rowText(t.keyCols, 's')} IN (SELECT ${rowText(t.keyCols, 'q')} FROM (${keysSql}) q)`;
  if (asArray) return keyInArray(t, 's', keysSql);
  return `(${t.keyCols.map((k) => `s.${quoteIdent(k)}`).join(', ')}) IN (${keysSql})`;
}

/** How a shape reads in status and validate: `-> archive.copy, columns (a, b), where (...), identity full`; empty without one. */
export function describeShape(shape: TableShape | undefined, label: (t: TableName) => string): string {
  if (!shape) return '';
  const parts: string[] = [];
  if (shape.target) parts.push(`-> ${label(shape.target)}`);
  const plain = shape.written.filter((c) => !(c in shape.expressions));
  parts.push(`columns (${plain.join(', ')})`);
  for (const [c, sql] of Object.entries(shape.expressions)) parts.push(`${c} = ${sql}`);
  if (shape.where) parts.push(`where ${shape.where}`);
  if (shape.fullRow) parts.push('identity full');
  return parts.join(', ');
}
