import type pg from 'pg';
import { inTransaction } from '../db/connections.js';
import type { TrackedTable } from './resolve.js';

/**
 * Copies a sync's resolved table list (with each table's key) into the
 * metadata database at add-triggers: repl.clone resolves and checks tables
 * against it, and the daemon reads it for copy_data and a clone's lane locks.
 */
export async function publishTables(client: pg.ClientBase, sync: string, tables: TrackedTable[]): Promise<void> {
  await inTransaction(client, async () => {
    await client.query('DELETE FROM repl.sync_table WHERE sync = $1', [sync]);
    // A table that left the sync gets its initial copy (copy_data) again if it comes back.
    await client.query(`DELETE FROM repl.seeded WHERE sync = $1 AND (schema_name, table_name) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))`, [
      sync,
      tables.map((t) => t.schema),
      tables.map((t) => t.table),
    ]);
    await client.query(
      `INSERT INTO repl.sync_table (sync, schema_name, table_name, key_cols)
       SELECT $1, s, t, ARRAY(SELECT jsonb_array_elements_text(k)) FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS u(s, t, k)`,
      [sync, tables.map((t) => t.schema), tables.map((t) => t.table), tables.map((t) => JSON.stringify(t.keyCols))],
    );
  });
}
