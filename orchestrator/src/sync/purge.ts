import type pg from 'pg';

/**
 * Deletes the deltas every consumer of this node has applied: those below the
 * oldest xmin of all registered positions (any job's). A removed job removes
 * its consumers, so it can never hold the log back.
 */
export async function purgeDeltas(client: pg.ClientBase): Promise<number> {
  // ORDER BY … LIMIT 1, not min(): PostgreSQL 13 has no min(xid8). NULLs sort
  // last, so as with min() a position-less consumer holds nothing back.
  const r = await client.query(
    `DELETE FROM repl.delta
      WHERE txid < (SELECT pg_snapshot_xmin(position) FROM repl.consumer ORDER BY 1 LIMIT 1)`,
  );
  return r.rowCount ?? 0;
}
