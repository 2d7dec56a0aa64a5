import type pg from 'pg';
import { type TableName, quoteTable } from '../db/ident.js';
import { refreshKicks } from '../db/kick-timing.js';
import { purgeDeltas } from '../sync/purge.js';

// Node-side registry of who consumes the delta log (repl.consumer*) and how
// far each receiving node has applied (repl.applied).

/**
 * Registers one consumer per target of a sync on a source node. A new
 * consumer starts at the current snapshot, taken before any trigger it needs
 * is created, so every captured change is after its position; an existing one
 * keeps its position.
 */
export async function registerConsumers(client: pg.ClientBase, job: string, sync: string, targets: string[], kick: boolean): Promise<void> {
  await client.query(
    `INSERT INTO repl.consumer (job, sync, target, kick, position)
     SELECT $1, $2, t, $4, pg_current_snapshot() FROM unnest($3::text[]) AS t
     ON CONFLICT (job, sync, target) DO UPDATE SET kick = EXCLUDED.kick, updated_at = now()`,
    [job, sync, targets, kick],
  );
  await client.query(`DELETE FROM repl.consumer WHERE job = $1 AND sync = $2 AND target <> ALL ($3::text[])`, [job, sync, targets]);
  await refreshKicks(client);
}

export async function trackTable(client: pg.ClientBase, job: string, sync: string, t: TableName, keyCols: string[]): Promise<void> {
  await client.query(
    `INSERT INTO repl.consumer_table (job, sync, relid, key_cols) VALUES ($1, $2, to_regclass($3), $4)
     ON CONFLICT (job, sync, relid) DO UPDATE SET key_cols = EXCLUDED.key_cols`,
    [job, sync, quoteTable(t), keyCols],
  );
}

export interface TrackedRow extends TableName {
  relid: number;
  /** Whether another (job, sync) also captures this table: its triggers must stay. */
  shared: boolean;
  /** The key its capture was registered with. */
  keyCols: string[];
}

export async function trackedTables(client: pg.ClientBase, job: string, sync: string): Promise<TrackedRow[]> {
  const { rows } = await client.query<TrackedRow>(
    `SELECT ct.relid::int AS relid, n.nspname AS schema, c.relname AS table, ct.key_cols AS "keyCols",
            EXISTS (SELECT 1 FROM repl.consumer_table o
                     WHERE o.relid = ct.relid AND (o.job, o.sync) <> (ct.job, ct.sync)) AS shared
       FROM repl.consumer_table ct
       LEFT JOIN pg_class c ON c.oid = ct.relid
       LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ct.job = $1 AND ct.sync = $2`,
    [job, sync],
  );
  return rows;
}

export async function untrackTable(client: pg.ClientBase, job: string, sync: string, relid: number): Promise<void> {
  await client.query('DELETE FROM repl.consumer_table WHERE job = $1 AND sync = $2 AND relid = $3', [job, sync, relid]);
}

export async function forgetSync(client: pg.ClientBase, job: string, sync: string): Promise<void> {
  await client.query('DELETE FROM repl.consumer_table WHERE job = $1 AND sync = $2', [job, sync]);
  await client.query('DELETE FROM repl.consumer WHERE job = $1 AND sync = $2', [job, sync]);
  await client.query('DELETE FROM repl.applied WHERE job = $1 AND sync = $2', [job, sync]);
  await refreshKicks(client);
  await dropUnreadDeltas(client);
}

/**
 * Deletes the deltas no remaining consumer will read: what purgeDeltas
 * deletes, or all of them when no consumer remains (the node is no longer
 * anyone's source, and no daemon purges it any more). Under a SHARE lock on
 * repl.consumer, so that no consumer registers meanwhile: it would start at
 * a snapshot that needs the deltas committed after it.
 */
async function dropUnreadDeltas(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('LOCK TABLE repl.consumer IN SHARE MODE');
    const { rowCount } = await client.query('SELECT 1 FROM repl.consumer LIMIT 1');
    if (rowCount) await purgeDeltas(client);
    else await client.query('DELETE FROM repl.delta');
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Records that a job uses this node (install), whatever its role. */
export async function registerJob(client: pg.ClientBase, job: string): Promise<void> {
  await client.query('INSERT INTO repl.job (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [job]);
}

/** Forgets everything of a job on this node (uninstall); returns whether any other job still uses the node. */
export async function forgetJob(client: pg.ClientBase, job: string): Promise<boolean> {
  await client.query('DELETE FROM repl.job WHERE name = $1', [job]);
  await client.query('DELETE FROM repl.consumer_table WHERE job = $1', [job]);
  await client.query('DELETE FROM repl.consumer WHERE job = $1', [job]);
  await client.query('DELETE FROM repl.applied WHERE job = $1', [job]);
  await refreshKicks(client);
  await dropUnreadDeltas(client);
  const r = await client.query(
    `SELECT EXISTS (SELECT 1 FROM repl.job) OR EXISTS (SELECT 1 FROM repl.consumer) OR EXISTS (SELECT 1 FROM repl.consumer_table)
            OR EXISTS (SELECT 1 FROM repl.applied) AS used`,
  );
  return r.rows[0].used === true;
}
