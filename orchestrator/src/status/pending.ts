import type pg from 'pg';
import type { Connections } from '../db/connections.js';

/** Changes committed on a lane's source and not yet applied on its target. */
export interface LanePending {
  rows: number;
  /** Age in seconds of the oldest such change (0 when none). */
  lagSeconds: number;
}

/** Rows pending for one lane and the age of the oldest, read on the source against the target's position. */
async function pendingSince(source: pg.ClientBase, job: string, sync: string, position: string): Promise<LanePending> {
  const r = await source.query<{ n: string; lag: number | null }>(
    `SELECT count(*) AS n, extract(epoch FROM now() - min(d.at))::float8 AS lag FROM repl.delta d
      WHERE d.txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(d.txid, $1::pg_snapshot)
        AND d.relid IN (SELECT relid FROM repl.consumer_table WHERE job = $2 AND sync = $3)
        AND d.origin IS DISTINCT FROM $2`,
    [position, job, sync],
  );
  return { rows: Number(r.rows[0]!.n), lagSeconds: Math.max(0, r.rows[0]!.lag ?? 0) };
}

export interface LanePosition {
  /** The snapshot up to which the target has applied the source's changes (null: none known). */
  position: string | null;
  /** Why the target's own record could not be read (the source's copy stood in), when it could not. */
  targetError?: unknown;
}

/**
 * Where a lane stands. The target's own record is authoritative; the source's
 * copy (for purge) may lag behind it, and stands in when the target cannot be
 * read or has none yet. Both are asked at once, so a node that does not
 * answer costs no more than its timeout. Throws when the source cannot be read.
 */
export async function lanePosition(conns: Connections, job: string, sync: string, source: string, target: string): Promise<LanePosition> {
  const [onTarget, onSource] = await Promise.allSettled([
    conns.with(target, (c) =>
      c.query<{ p: string }>('SELECT position::text AS p FROM repl.applied WHERE job = $1 AND sync = $2 AND source = $3', [job, sync, source]),
    ),
    conns.with(source, (c) =>
      c.query<{ p: string }>('SELECT position::text AS p FROM repl.consumer WHERE job = $1 AND sync = $2 AND target = $3', [job, sync, target]),
    ),
  ]);
  // The pending figures are read on the source: one that does not answer has none to give.
  if (onSource.status === 'rejected') throw onSource.reason;
  if (onTarget.status === 'rejected') return { position: onSource.value.rows[0]?.p ?? null, targetError: onTarget.reason as unknown };
  return { position: onTarget.value.rows[0]?.p ?? onSource.value.rows[0]?.p ?? null };
}

/** Rows pending on the source after `position`, and the age of the oldest. */
export function pendingAfter(conns: Connections, job: string, sync: string, source: string, position: string): Promise<LanePending> {
  return conns.with(source, (c) => pendingSince(c, job, sync, position));
}

/**
 * Rows pending on one lane (sync, source -> target) and the lag in seconds,
 * unrounded. Null when no position is known for the lane (triggers not added
 * yet). Throws when the source cannot be read.
 */
export async function lanePending(conns: Connections, job: string, sync: string, source: string, target: string): Promise<LanePending | null> {
  const { position } = await lanePosition(conns, job, sync, source, target);
  if (position === null) return null;
  return pendingAfter(conns, job, sync, source, position);
}
