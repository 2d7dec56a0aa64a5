import type pg from 'pg';
import { quoteTable, tableLabel } from '../db/ident.js';
import { describeShape } from '../sync/table-shape.js';
import type { TrackedTable } from '../triggers/resolve.js';
import type { Problem } from './report.js';

/**
 * Table shapes across a sync's nodes. The apply copies the columns it finds
 * on the target and refuses a table whose written columns (not dropped, not
 * generated) differ by name from the source's (sync/table-meta.ts): so every
 * node must have the same columns, with no extra ones even when nullable,
 * and here also of the same types, since COPY's text of one type may not
 * read as another (or, worse, read as something else). None of this can be
 * fixed by capra: the operator alters the tables.
 *
 * A table with tables.options (a shape) is looked for on the targets under
 * its target name, and there needs only the columns its shape writes, each
 * replicated one of the source's type.
 */
type Shape = Map<string, string>;

/**
 * Every written column of each table, with its type as format_type writes
 * it, by the table's (source) name; absent tables are left out. On a target
 * (`onTarget`), a shaped table is read under its target name.
 */
export async function tableShapes(c: pg.ClientBase, tables: TrackedTable[], onTarget = false): Promise<Map<string, Shape>> {
  const { rows } = await c.query<{ name: string; col: string; type: string }>(
    `SELECT u.name, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type
       FROM unnest($1::text[], $2::text[]) AS u(name, here)
       JOIN pg_attribute a ON a.attrelid = to_regclass(u.here)
      WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY u.name, a.attnum`,
    [tables.map(quoteTable), tables.map((t) => quoteTable((onTarget && t.shape?.target) || t))],
  );
  const out = new Map<string, Shape>();
  for (const r of rows) {
    let shape = out.get(r.name);
    if (!shape) out.set(r.name, (shape = new Map()));
    shape.set(r.col, r.type);
  }
  return out;
}

/** How `node`'s tables differ from the reference node's, one problem per table. */
export function shapeProblems(
  sync: string,
  ref: { node: string; shapes: Map<string, Shape> },
  node: string,
  shapes: Map<string, Shape>,
  tables: TrackedTable[],
): Problem[] {
  const out: Problem[] = [];
  for (const t of tables) {
    const want = ref.shapes.get(quoteTable(t));
    if (!want) continue;
    const have = shapes.get(quoteTable(t));
    const at = { node, sync, table: tableLabel(t) };
    const shaped = t.shape ? ` (shape: ${describeShape(t.shape, tableLabel)})` : '';
    if (!have) {
      out.push({ ...at, what: `the table does not exist here${shaped} (it does on ${ref.node}): create it` });
      continue;
    }
    if (t.shape) {
      const s = t.shape;
      const diffs = s.written.filter((c) => !have.has(c)).map((c) => `lacks column ${c}`);
      for (const c of s.written) {
        const type = want.get(c);
        if (!(c in s.expressions) && type !== undefined && have.has(c) && have.get(c) !== type)
          diffs.push(`column ${c} is ${have.get(c)}, ${type} on ${ref.node}`);
      }
      if (diffs.length > 0) out.push({ ...at, what: `${diffs.join('; ')}${shaped}: alter the table to match` });
      continue;
    }
    const diffs: string[] = [];
    const missing = [...want.keys()].filter((c) => !have.has(c));
    const extra = [...have.keys()].filter((c) => !want.has(c));
    if (missing.length > 0) diffs.push(`lacks column(s) ${missing.join(', ')}`);
    if (extra.length > 0) diffs.push(`has column(s) ${extra.join(', ')} that ${ref.node} lacks (the apply copies the same columns on every node)`);
    for (const [col, type] of want) {
      const other = have.get(col);
      if (other !== undefined && other !== type) diffs.push(`column ${col} is ${other}, ${type} on ${ref.node}`);
    }
    if (diffs.length > 0) out.push({ ...at, what: `${diffs.join('; ')}: alter the table to match` });
  }
  return out;
}

/** A source whose key for a table differs from the reference source's: captured keys would not match. */
export function keyProblems(sync: string, ref: { node: string; tables: TrackedTable[] }, node: string, tables: TrackedTable[]): Problem[] {
  const out: Problem[] = [];
  for (const t of ref.tables) {
    const mine = tables.find((x) => x.schema === t.schema && x.table === t.table);
    if (!mine || mine.keyCols.join('\0') === t.keyCols.join('\0')) continue;
    out.push({
      node,
      sync,
      table: tableLabel(t),
      what: `its key here is (${mine.keyCols.join(', ')}), (${t.keyCols.join(', ')}) on ${ref.node}: give it the same primary key (or tables.keys index) on every node`,
    });
  }
  return out;
}
