import { Connections, inTransaction } from '../db/connections.js';
import { errorTable } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import type { TableName } from '../db/ident.js';
import type { LaneKey } from '../sync/lane.js';
import type { Logger } from '../util/logger.js';
import { type CloneOutcome, executeClone } from './execute.js';
import { copyIndexesFor } from './index-drop.js';
import { finishClone, startSeedClone } from './request.js';

/**
 * copy_data: before a lane first applies a table (the sync's first start, or
 * a table added later), the table is copied from the source to the target
 * once: always (the target emptied first), only where the target's table is
 * empty (empty), or never. Returns the source relids of the tables seen to
 * (null for never), for the lane's check that no table slips past. It runs as a clone (origin copy_data), so its
 * progress and history are in repl.clone like any other; which tables are
 * done is kept in repl.seeded. A cancelled initial copy counts as done: the
 * lane goes on without it.
 */
export async function seedLane(conns: Connections, k: LaneKey, logger: Logger, signal?: AbortSignal): Promise<Set<number> | null> {
  if (k.sync.copyData === 'never') return null;
  const pending = await conns.with(Connections.META, async (c) => {
    const r = await c.query<TableName>(
      `SELECT st.schema_name AS schema, st.table_name AS table FROM repl.sync_table st
        WHERE st.sync = $1 AND NOT EXISTS (
          SELECT 1 FROM repl.seeded s WHERE s.sync = st.sync AND s.schema_name = st.schema_name AND s.table_name = st.table_name AND s.target = $2)
        ORDER BY 1, 2`,
      [k.sync.name, k.target],
    );
    return r.rows;
  });
  if (pending.length > 0) await seed(conns, k, pending, logger, signal);
  return seededRelids(conns, k);
}

/** The source relids of the sync's tables whose initial copy to the lane's target is done. */
async function seededRelids(conns: Connections, k: LaneKey): Promise<Set<number>> {
  const names = await conns.with(Connections.META, async (c) => {
    const r = await c.query<{ name: string }>(
      `SELECT quote_ident(schema_name) || '.' || quote_ident(table_name) AS name FROM repl.seeded WHERE sync = $1 AND target = $2`,
      [k.sync.name, k.target],
    );
    return r.rows.map((row) => row.name);
  });
  const relids = await conns.with(k.source, async (c) => {
    const r = await c.query<{ relid: number | null }>('SELECT to_regclass(n)::oid::int AS relid FROM unnest($1::text[]) AS n', [names]);
    return r.rows.map((row) => row.relid);
  });
  return new Set(relids.filter((r): r is number => r !== null));
}

async function seed(conns: Connections, k: LaneKey, pending: TableName[], logger: Logger, signal?: AbortSignal): Promise<void> {
  // With copy_indexes, each table carries its threshold (null: keep its indexes).
  const thresholds = pending.map((t) => copyIndexesFor(k.sync.copyIndexes, t));
  const tables = thresholds.some((n) => n !== null) ? pending.map((t, i) => ({ ...t, drop_indexes_above: thresholds[i] })) : pending;
  const req = await conns.with(Connections.META, (c) => startSeedClone(c, k.sync.name, tables, k.source, k.target, k.sync.copyData === 'empty'));
  logger.info({ clone: req.id, tables: pending.length, copy_data: k.sync.copyData }, 'initial copy (copy_data) started');
  let outcome: CloneOutcome;
  try {
    outcome = await executeClone(conns, k.job, req, logger, { signal, cascade: k.sync.cascade, options: k.sync.tables.options });
  } catch (err) {
    const msg = errorMessage(err);
    await conns.with(Connections.META, (c) => finishClone(c, req.id, 'failed', msg)).catch(() => {});
    throw new CapraError(`initial copy (clone ${req.id}) failed: ${msg}`, { cause: err, table: errorTable(err) });
  }
  await conns.with(Connections.META, (c) =>
    inTransaction(c, async () => {
      await c.query(
        `INSERT INTO repl.seeded (sync, schema_name, table_name, target, clone_id)
         SELECT $1, s, t, $2, $3 FROM unnest($4::text[], $5::text[]) AS u(s, t) ON CONFLICT DO NOTHING`,
        [k.sync.name, k.target, req.id, pending.map((t) => t.schema), pending.map((t) => t.table)],
      );
      await finishClone(c, req.id, outcome, outcome === 'cancelled' ? 'cancelled' : undefined);
    }),
  );
  logger.info({ clone: req.id, outcome }, 'initial copy (copy_data) ended');
}
