import type pg from 'pg';
import { lockLanes } from '../clone/lane-locks.js';
import type { SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { quoteTable } from '../db/ident.js';
import { keyDefs } from '../sync/apply.js';
import { PIN_OUTPUT_FORMATS, changesAfter, inLockOrder, lockSyncPositions } from '../sync/delta-log.js';
import type { TableMeta } from '../sync/table-meta.js';
import { type Key, keyArray, keyId } from './key-sql.js';

/**
 * Consistent views of a sync's nodes for comparing them while writers and
 * the daemon keep going. Every receiving node's lane positions are locked
 * (as a lane run locks them: no lane applies meanwhile), then each node
 * opens a REPEATABLE READ snapshot, then the locks are let go (a lane waits
 * a few milliseconds at most). So each receiver's rows are exactly what its
 * lanes have applied up to their locked positions, and each source's
 * snapshot sees at least that much: a key that differs because of a change
 * still in flight is a key changed on a source after a receiver's position,
 * up to the source's snapshot, which the delta log lists (inFlightKeys).
 */

export interface NodeView {
  db: string;
  client: pg.PoolClient;
  /** The node's snapshot (pg_snapshot text): the compare's position on it. */
  snapshot: string;
}

export interface SnapshotSet {
  views: Map<string, NodeView>;
  /** receiver -> source -> the position the receiver had applied. */
  positions: Map<string, Map<string, string>>;
  close(): Promise<void>;
}

const ATTEMPTS = 5;

async function rollbackAll(clients: pg.PoolClient[], err?: Error): Promise<void> {
  for (const c of clients) {
    await c.query('ROLLBACK').catch(() => {});
    c.release(err);
  }
}

/** Opens the views of `nodes` (and of every source of the sync, for what is in flight); retried on a deadlock with a concurrent run. */
export async function openSnapshots(conns: Connections, job: string, sync: SyncConfig, nodes: string[]): Promise<SnapshotSet> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(conns, job, sync, nodes);
    } catch (err) {
      const code = sqlState(err);
      if (attempt >= ATTEMPTS || (code !== SQLSTATE.deadlockDetected && code !== SQLSTATE.serializationFailure)) throw err;
    }
  }
}

async function openOnce(conns: Connections, job: string, sync: SyncConfig, nodes: string[]): Promise<SnapshotSet> {
  const all = [...new Set([...sync.sources, ...sync.targets].filter((n) => nodes.includes(n) || sync.sources.includes(n)))];
  const lockers: pg.PoolClient[] = [];
  const views = new Map<string, NodeView>();
  const positions = new Map<string, Map<string, string>>();
  try {
    // Node by node, in the order a multi-master run and a clone lock them.
    const receivers = inLockOrder(
      all.filter((n) => nodes.includes(n)),
      (n) => n,
    );
    for (const receiver of receivers) {
      const lanes = sync.sources.filter((s) => s !== receiver).map((source) => ({ sync: sync.name, source }));
      if (lanes.length === 0) continue;
      const c = await conns.connect(receiver);
      lockers.push(c);
      await c.query('BEGIN');
      await lockLanes(c, receiver, conns, job, lanes);
      positions.set(receiver, await lockSyncPositions(c, job, sync.name));
    }
    for (const db of all) {
      const c = await conns.connect(db);
      views.set(db, { db, client: c, snapshot: '' });
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const r = await c.query<{ s: string }>(`SELECT pg_current_snapshot()::text AS s, ${PIN_OUTPUT_FORMATS}, set_config('TimeZone', 'UTC', true)`);
      views.get(db)!.snapshot = r.rows[0]!.s;
    }
    for (const c of lockers.splice(0)) {
      await c.query('COMMIT');
      c.release();
    }
  } catch (err) {
    await rollbackAll([...lockers, ...[...views.values()].map((v) => v.client)], err as Error);
    throw err;
  }
  return {
    views,
    positions,
    close: () => rollbackAll([...views.values()].map((v) => v.client)),
  };
}

/** Keys of a table in flight between the views: changed on a source after a compared receiver's position. */
export interface InFlight {
  keys: Set<string>;
  /** A TRUNCATE is in flight: the whole table is. */
  truncated: boolean;
}

/** What is in flight for table `t` into any of `nodes`, read from each source's delta log in its view. */
export async function inFlightKeys(set: SnapshotSet, job: string, t: TableMeta, nodes: string[]): Promise<InFlight> {
  const out: InFlight = { keys: new Set(), truncated: false };
  for (const receiver of nodes) {
    for (const [source, position] of set.positions.get(receiver) ?? []) {
      const view = set.views.get(source);
      if (!view) continue;
      const r = await view.client.query<{ k: Key | null }>(
        `SELECT DISTINCT CASE WHEN d.op = 'T' THEN NULL ELSE ${keyArray(t, 'r')} END AS k
           FROM ${changesAfter('$1', '$2', '$3')} CROSS JOIN LATERAL jsonb_to_record(coalesce(d.pk, '{}')) AS r(${keyDefs(t)})
          WHERE d.relid = to_regclass($4)`,
        [position, view.snapshot, job, quoteTable(t)],
      );
      for (const row of r.rows) {
        if (row.k === null) out.truncated = true;
        else out.keys.add(keyId(row.k));
      }
    }
  }
  return out;
}
