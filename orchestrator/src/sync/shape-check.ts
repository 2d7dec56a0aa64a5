import type pg from 'pg';
import type { TableOptions } from '../config/table-options.js';
import { type TableName, quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { errorMessage } from '../util/errors.js';
import { splitQualified as splitName } from '../util/qualified-name.js';
import type { TableShape } from './table-shape.js';

/**
 * Checks a table's options against the table itself, on the node whose rows
 * they are evaluated on (the source), and turns them into the TableShape the
 * apply and the clone write into SQL.
 *
 * A row filter or an expression is text from the config. It is never spliced
 * as written: PostgreSQL parses it as a CHECK constraint of a temporary copy
 * of the table's columns (CREATE TEMP TABLE ... (LIKE table), in a
 * transaction that is rolled back), which refuses subqueries, aggregates,
 * set-returning functions and any name that is not one of the table's
 * columns; the functions and operators it calls (read from the parsed
 * node tree) are checked for volatility; and what the apply uses is PostgreSQL's own
 * deparse of it (pg_get_expr), one expression with nothing around it.
 */

/** One option's text, as a CHECK expression, and the deparsed form to cut back out of it. */
interface Probe {
  /** The option, for messages: `where` or `expressions.<column>`. */
  what: string;
  sql: string;
  kind: 'filter' | 'expression';
}

// An expression is checked as `(expr) IS NULL`: any type goes, and the deparse is `(<expr> IS NULL)`.
const EXPR_SUFFIX = ' IS NULL)';

/** What a refused option's message says instead of PostgreSQL's "check constraint". */
const wording = (kind: Probe['kind']): string => (kind === 'filter' ? 'a row filter' : 'a column expression');

/** The table's columns (not dropped): name -> generated. */
async function columnsOf(client: pg.ClientBase, t: TableName): Promise<Map<string, boolean> | null> {
  const r = await client.query<{ oid: number | null; cols: { name: string; generated: boolean }[] | null }>(
    `SELECT c.oid::int AS oid,
            (SELECT json_agg(json_build_object('name', a.attname, 'generated', a.attgenerated <> '') ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
       FROM (SELECT to_regclass($1) AS oid) x LEFT JOIN pg_class c ON c.oid = x.oid`,
    [quoteTable(t)],
  );
  const row = r.rows[0];
  if (!row || row.oid === null) return null;
  return new Map((row.cols ?? []).map((c) => [c.name, c.generated]));
}

/** One statement by the extended protocol: PostgreSQL refuses a second statement there, whatever the text holds. */
function single(client: pg.ClientBase, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  return client.query({ text, values, queryMode: 'extended' } as pg.QueryConfig);
}

/**
 * Parses each probe against the table's columns; returns the deparsed SQL
 * by probe, or the problem of each one refused. Runs in its own
 * transaction on `client`, rolled back.
 */
async function parseProbes(client: pg.ClientBase, t: TableName, probes: Probe[]): Promise<{ sql: Map<string, string>; problems: string[] }> {
  const out = new Map<string, string>();
  const problems: string[] = [];
  if (probes.length === 0) return { sql: out, problems };
  await client.query('BEGIN');
  try {
    await client.query(`CREATE TEMP TABLE capra_shape_probe (LIKE ${quoteTable(t)}) ON COMMIT DROP`);
    for (const [i, p] of probes.entries()) {
      const name = `capra_probe_${i}`;
      const check = p.kind === 'filter' ? `(${p.sql})` : `((${p.sql}) IS NULL)`;
      await client.query('SAVEPOINT capra_probe');
      try {
        await single(client, `ALTER TABLE capra_shape_probe ADD CONSTRAINT ${quoteIdent(name)} CHECK ${check}`);
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT capra_probe');
        problems.push(`${p.what} ${JSON.stringify(p.sql)}: ${errorMessage(err).replace(/\b(a )?(check constraints?|CHECK)\b/g, wording(p.kind))}`);
        continue;
      }
      // The functions the parsed expression calls, operators' included, read from its node tree:
      // pg_depend leaves out built-in ones (pinned objects), random() among them.
      const r = await client.query<{ def: string; volatile: string | null; stable: string | null }>(
        `SELECT pg_get_expr(k.conbin, k.conrelid) AS def,
                (SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') FILTER (WHERE p.provolatile = 'v')
                   FROM regexp_matches(k.conbin::text, ':(?:funcid|opfuncid) (\\d+)', 'g') m JOIN pg_proc p ON p.oid = m[1]::oid) AS volatile,
                (SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') FILTER (WHERE p.provolatile = 's')
                   FROM regexp_matches(k.conbin::text, ':(?:funcid|opfuncid) (\\d+)', 'g') m JOIN pg_proc p ON p.oid = m[1]::oid) AS stable
           FROM pg_constraint k WHERE k.conrelid = 'capra_shape_probe'::regclass AND k.conname = $1`,
        [name],
      );
      const { def, volatile, stable } = r.rows[0]!;
      if (volatile) problems.push(`${p.what} ${JSON.stringify(p.sql)}: calls volatile function(s) ${volatile}, which give another value each time`);
      else if (p.kind === 'filter' && stable)
        problems.push(
          `${p.what} ${JSON.stringify(p.sql)}: calls ${stable}, which is not immutable: a row filter must give the same answer whenever a row is read`,
        );
      else if (p.kind === 'filter') out.set(p.what, def);
      else if (def.startsWith('(') && def.endsWith(EXPR_SUFFIX)) out.set(p.what, def.slice(1, -EXPR_SUFFIX.length));
      else problems.push(`${p.what} ${JSON.stringify(p.sql)}: PostgreSQL read it back as ${def}, which capra cannot take apart`);
    }
  } finally {
    await client.query('ROLLBACK');
  }
  return { sql: out, problems };
}

/**
 * The columns of a full-row identity must each have an equality operator:
 * the apply looks rows up by them. A DISTINCT over them is refused at parse
 * time when one has none (json, point, xml), which is the check.
 */
async function equalityProblem(client: pg.ClientBase, t: TableName, cols: string[]): Promise<string | null> {
  try {
    await single(client, `SELECT 1 FROM (SELECT DISTINCT ${cols.map(quoteIdent).join(', ')} FROM ONLY ${quoteTable(t)} WHERE false) x`);
    return null;
  } catch (err) {
    return `identity full: ${errorMessage(err)} (a whole-row identity compares every replicated column: leave such columns out with columns)`;
  }
}

/**
 * Checks the options of table `t` on the node `client` is connected to
 * (its source) and returns its shape, or every problem found, each one
 * line without the table's name. `keyCols` is the table's key (null: none,
 * which identity full stands in for).
 */
export async function checkShape(
  client: pg.ClientBase,
  t: TableName,
  o: TableOptions,
  keyCols: string[] | null,
): Promise<{ shape: TableShape | null; identity: string[]; problems: string[] }> {
  const problems: string[] = [];
  const cols = await columnsOf(client, t);
  if (!cols) return { shape: null, identity: [], problems: ['does not exist'] };
  const expressions = o.expressions ?? {};
  const listed = o.columns ?? [...cols].filter(([, generated]) => !generated).map(([c]) => c);
  for (const c of listed) if (!cols.has(c)) problems.push(`columns: no column ${JSON.stringify(c)} in the table`);
  const written = [...listed, ...Object.keys(expressions).filter((c) => !listed.includes(c))];
  for (const k of keyCols ?? []) {
    if (!listed.includes(k)) problems.push(`columns: the key column ${JSON.stringify(k)} must be among the replicated columns`);
    if (k in expressions) problems.push(`expressions: the key column ${JSON.stringify(k)} cannot be computed (the targets find rows by it)`);
  }
  // Whole-row identity: every replicated column written as it is.
  const identity = keyCols ?? listed.filter((c) => !(c in expressions) && cols.has(c));
  if (keyCols === null && o.identity === 'full') {
    if (identity.length === 0) problems.push('identity full: no column is replicated as it is, so no row can be told apart');
    else if (problems.length === 0) {
      const p = await equalityProblem(client, t, identity);
      if (p) problems.push(p);
    }
  }
  const probes: Probe[] = [
    ...(o.where !== undefined ? [{ what: 'where', sql: o.where, kind: 'filter' as const }] : []),
    ...Object.entries(expressions).map(([c, sql]) => ({ what: `expressions.${c}`, sql, kind: 'expression' as const })),
  ];
  const parsed = await parseProbes(client, t, probes);
  problems.push(...parsed.problems);
  if (problems.length > 0) return { shape: null, identity, problems };
  return {
    shape: {
      target: o.target === undefined ? null : targetName(o.target),
      written,
      expressions: Object.fromEntries(Object.keys(expressions).map((c) => [c, parsed.sql.get(`expressions.${c}`)!])),
      where: parsed.sql.get('where') ?? null,
      fullRow: keyCols === null && o.identity === 'full',
    },
    identity,
    problems,
  };
}

/** The target named in the options (`table` is in public). */
function targetName(ref: string): TableName {
  // The config checked its form; parse it the way tables.options keys are.
  const parts = splitName(ref);
  return parts.length === 1 ? { schema: 'public', table: parts[0]! } : { schema: parts[0]!, table: parts[1]! };
}

/** A problem of a table's shape as one line: `table X on DB: problem`. */
export const shapeProblemLine = (t: TableName, db: string, problem: string): string => `table ${tableLabel(t)} on ${db}: ${problem}`;
