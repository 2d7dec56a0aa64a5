import type pg from 'pg';

/**
 * Deletes the deltas every consumer of this node has applied: those below the
 * oldest xmin of all registered positions (any job's). A removed job removes
 * its consumers, so it can never hold the log back.
 */
export async function purgeDeltas(client: pg.ClientBase): Promise<number> {
  const r = await client.query(
    `DELETE FROM repl.delta
      WHERE txid < (SELECT min(pg_snapshot_xmin(position)) FROM repl.consumer)`,
  );
  return r.rowCount ?? 0;
}
