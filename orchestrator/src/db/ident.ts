// Identifier quoting. Every name that reaches SQL text goes through here;
// values never do (they are bind parameters).

export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error(`identifier contains a NUL byte: ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

export interface TableName {
  schema: string;
  table: string;
}

export function quoteTable(t: TableName): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
}

/** schema.table for messages and keys; not for SQL. */
export function tableLabel(t: TableName): string {
  const part = (s: string): string => (/^[a-z_][a-z0-9_]*$/.test(s) ? s : JSON.stringify(s));
  return `${part(t.schema)}.${part(t.table)}`;
}

/** Escape a value as an SQL string literal, for the few places (COPY) that take no parameters. */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('string literal contains a NUL byte');
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * `ONLY ` for a plain table (its own rows, not inheritance children's), and
 * nothing for a partitioned one: it has no rows of its own, all are in its
 * partitions (and TRUNCATE ONLY refuses it).
 */
export const onlyUnlessPartitioned = (partitioned: boolean | undefined): string => (partitioned ? '' : 'ONLY ');
