import type pg from 'pg';
import type { TableOptions } from '../config/table-options.js';
import { type TableName, tableLabel } from '../db/ident.js';
import { checkShape, shapeProblemLine } from '../sync/shape-check.js';
import type { TableShape } from '../sync/table-shape.js';
import { CapraError } from '../util/errors.js';

/**
 * The shape a clone copies a table in, from its sync's tables.options,
 * checked on the source as the lanes check it (sync/shape-check.ts): the
 * copy reads the source's rows through the filter and the expressions into
 * the target's table, so copy_data, a requested clone and fullcopy leave
 * the targets as the lanes would. Runs before the source's snapshot: the
 * check needs a writable transaction of its own.
 */
export async function cloneShape(source: pg.ClientBase, t: TableName, o: TableOptions, db: string): Promise<TableShape> {
  const { shape, problems } = await checkShape(source, t, o, o.identity === 'full' ? null : []);
  if (!shape) throw new CapraError(problems.map((p) => shapeProblemLine(t, db, `tables.options ${p}`)).join('; '), { table: tableLabel(t) });
  return shape;
}
