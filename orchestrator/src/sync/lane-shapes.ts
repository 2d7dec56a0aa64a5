import type pg from 'pg';
import { type TableOptions, parseOptionsKey } from '../config/table-options.js';
import type { SyncConfig } from '../config/types.js';
import { quoteTable, tableLabel } from '../db/ident.js';
import { CapraError } from '../util/errors.js';
import { checkShape, shapeProblemLine } from './shape-check.js';
import type { TableShape } from './table-shape.js';

/** A lane's checked shapes, kept while its sync's options stay as they are. */
export interface LaneShapes {
  /** The options they were made from (JSON). */
  of: string;
  /** By the source table's relid. */
  byRelid: Map<number, TableShape>;
}

/** The options of a sync's captured tables (fullcopy tables are copied by the clone path, not applied). */
export function capturedOptions(sync: SyncConfig): [string, TableOptions][] {
  return Object.entries(sync.tables.options ?? {}).filter(([, o]) => o.fullcopy === undefined);
}

/**
 * The shapes of the sync's tables on `source`, checked there (shape-check.ts)
 * the first time and again whenever the options change: what the apply
 * splices is what PostgreSQL read back, never the config's text. Run
 * outside the lane's read-only transaction (the check makes a temporary
 * table). A table the options name that does not exist is left out: no
 * change of it can be in the log.
 */
export async function laneShapes(source: pg.ClientBase, sync: SyncConfig, db: string, known?: LaneShapes): Promise<LaneShapes> {
  const entries = capturedOptions(sync);
  const of = JSON.stringify(entries);
  if (known?.of === of) return known;
  const byRelid = new Map<number, TableShape>();
  for (const [ref, o] of entries) {
    const t = parseOptionsKey(ref);
    const r = await source.query<{ relid: number | null }>('SELECT to_regclass($1)::oid::int AS relid', [quoteTable(t)]);
    const relid = r.rows[0]?.relid ?? null;
    if (relid === null) continue;
    const { shape, problems } = await checkShape(source, t, o, o.identity === 'full' ? null : []);
    if (!shape) throw new CapraError(`sync ${sync.name}: ${problems.map((p) => shapeProblemLine(t, db, p)).join('; ')}`, { table: tableLabel(t) });
    byRelid.set(relid, shape);
  }
  return { of, byRelid };
}
