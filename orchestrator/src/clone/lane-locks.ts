import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import type { TableName } from '../db/ident.js';
import { lockPosition, registeredPosition } from '../sync/delta-log.js';

/** A lane (sync, source → the receiving database) that replicates a table. */
export interface LaneRef {
  sync: string;
  source: string;
}

const tableKey = (t: TableName): string => JSON.stringify([t.schema, t.table]);

/**
 * Which lanes write each table into each database, from the syncs registered
 * in the metadata database: table key -> receiving database -> lanes.
 */
export async function lanesInto(meta: pg.ClientBase, tables: TableName[]): Promise<(t: TableName, receiver: string) => LaneRef[]> {
  const r = await meta.query<{ schema: string; table: string; receiver: string; source: string; sync: string }>(
    `SELECT st.schema_name AS schema, st.table_name AS table, recv.node AS receiver, src.node AS source, st.sync
       FROM repl.sync_table st
       JOIN repl.sync_node recv ON recv.sync = st.sync
       JOIN repl.sync_node src ON src.sync = st.sync AND src.role = 'source' AND src.node <> recv.node
      WHERE (st.schema_name, st.table_name) IN (SELECT * FROM unnest($1::text[], $2::text[]))
      ORDER BY st.sync, src.node`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  const map = new Map<string, LaneRef[]>();
  for (const row of r.rows) {
    const key = tableKey(row) + row.receiver;
    map.set(key, [...(map.get(key) ?? []), { sync: row.sync, source: row.source }]);
  }
  return (t, receiver) => map.get(tableKey(t) + receiver) ?? [];
}

/**
 * Locks, in the receiver's open transaction, the positions of the lanes that
 * write the table into it. Until that transaction ends no lane applies to the
 * receiver, so a snapshot of the source taken after this call sees every
 * change the lanes have applied there: copying in that snapshot never goes
 * back behind them, and the changes it holds that the lanes have not applied
 * yet are applied again later (harmless: applying is idempotent).
 *
 * A lane that never ran gets its starting position written first (what the
 * lane itself would write), so that it has a row to lock.
 */
export async function lockLanes(receiver: pg.ClientBase, receiverName: string, conns: Connections, job: string, lanes: LaneRef[]): Promise<void> {
  for (const lane of lanes) {
    const ref = { job, sync: lane.sync, source: lane.source, target: receiverName };
    if ((await lockPosition(receiver, ref)) !== null) continue;
    const start = await conns.with(lane.source, (c) => registeredPosition(c, ref));
    if (start === null) continue; // no consumer registered: that lane cannot run
    await lockPosition(receiver, ref, start);
  }
}
