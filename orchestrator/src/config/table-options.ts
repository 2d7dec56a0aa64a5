import cron from 'node-cron';
import { z } from 'zod';
import { splitQualified } from '../util/qualified-name.js';
import { expected, expecting, says, settings, show, text } from './schema-kit.js';

// A sync's per-table options (tables.options in the file): the shape a table
// takes on the targets. The SQL they hold (expressions, where) is checked
// against the table by PostgreSQL at add-triggers and before each use
// (sync/shape-check.ts); here only its form.

/** `table` (in public) or `schema.table`, as a table option's key or its target. */
function isTableName(s: string): boolean {
  try {
    const parts = splitQualified(s);
    return parts.length === 1 || parts.length === 2;
  } catch {
    return false;
  }
}

const tableName = text.refine(
  isTableName,
  says((v) => `expected table or schema.table, got ${show(v)}`),
);

const columnList = z
  .array(text, expected('a list of column names'))
  .refine((l) => l.length > 0, 'a column list needs at least one column')
  .refine(
    (l) => new Set(l).size === l.length,
    says((l) => `a column is listed twice in ${show(l)}`),
  );

const cronText = text.refine(
  (s) => cron.validate(s),
  says((s) => `not a valid cron expression: ${show(s)}`),
);

export const IDENTITIES = ['key', 'full'] as const;

/** One table's options; every key may be left out. */
const tableOptions = settings(
  {
    /** The table's name on the targets (schema.table); left out: its own name. */
    target: tableName.optional(),
    /** Only these columns are replicated (the key among them); left out: every column. */
    columns: columnList.optional(),
    /** Target column -> SQL expression on the source's row, written to the targets in its place (one-way syncs). */
    expressions: z.record(z.string(), text, expected('a map of column to SQL expression')).optional(),
    /** Only the source's rows for which this SQL condition holds reach the targets. */
    where: text.optional(),
    /** full: a table without a key is replicated with its whole row as identity. */
    identity: z.enum(IDENTITIES, expected(`one of ${IDENTITIES.join(', ')}`)).optional(),
    /** A cron schedule (node-cron, with seconds) on which the whole table is copied to the targets instead of captured. */
    fullcopy: cronText.optional(),
  },
  expecting('a map of table options (target, columns, expressions, where, identity, fullcopy)'),
  {
    reads: ['identity', 'fullcopy'],
    check: (o, payload) => {
      if (o.fullcopy !== undefined && o.identity === 'full')
        payload.addIssue({ code: 'custom', path: ['identity'], message: 'a fullcopy table is copied whole, not captured: leave identity out', input: o });
    },
  },
);

export type TableOptions = z.output<typeof tableOptions>;

/** tables.options: schema.table -> its options. */
export const tableOptionsMap = z
  .record(tableName, tableOptions, expected('a map of table to its options (target, columns, expressions, where, identity, fullcopy)'))
  .optional();

/** The options the file gives a table (written as `table` or `schema.table`), if any. */
export function optionsFor(options: Record<string, TableOptions>, t: { schema: string; table: string }): TableOptions | undefined {
  for (const [ref, o] of Object.entries(options)) {
    const n = parseOptionsKey(ref);
    if (n.schema === t.schema && n.table === t.table) return o;
  }
  return undefined;
}

/** The table an options key (or a target) names: `table` is in schema public. */
export function parseOptionsKey(ref: string): { schema: string; table: string } {
  const parts = splitQualified(ref);
  return parts.length === 1 ? { schema: 'public', table: parts[0]! } : { schema: parts[0]!, table: parts[1]! };
}

/** A table's options in one line, for status and validate: `public.orders -> archive.copy, columns (a, b), v = v * 2, where v > 0, identity full, fullcopy 0 * * * *`. */
export function describeOptions(ref: string, o: TableOptions): string {
  const parts: string[] = [];
  if (o.target !== undefined) parts.push(`-> ${o.target}`);
  if (o.columns !== undefined) parts.push(`columns (${o.columns.join(', ')})`);
  for (const [c, sql] of Object.entries(o.expressions ?? {})) parts.push(`${c} = ${sql}`);
  if (o.where !== undefined) parts.push(`where ${o.where}`);
  if (o.identity !== undefined) parts.push(`identity ${o.identity}`);
  if (o.fullcopy !== undefined) parts.push(`fullcopy ${o.fullcopy}`);
  return `${ref}: ${parts.join(', ') || 'as it is'}`;
}
