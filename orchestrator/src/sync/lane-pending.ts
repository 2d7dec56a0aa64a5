import type { Connections } from '../db/connections.js';
import { type LanePending, appliedPosition, pendingAfter as pendingOn, registeredPosition } from './delta-log.js';

export type { LanePending };

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
  const lane = { job, sync, source, target };
  const [onTarget, onSource] = await Promise.allSettled([
    conns.with(target, (c) => appliedPosition(c, lane)),
    conns.with(source, (c) => registeredPosition(c, lane)),
  ]);
  // The pending figures are read on the source: one that does not answer has none to give.
  if (onSource.status === 'rejected') throw onSource.reason;
  if (onTarget.status === 'rejected') return { position: onSource.value, targetError: onTarget.reason as unknown };
  return { position: onTarget.value ?? onSource.value };
}

/** Rows pending on the source after `position`, and the age of the oldest. */
export function pendingAfter(conns: Connections, job: string, sync: string, source: string, position: string): Promise<LanePending> {
  return conns.with(source, (c) => pendingOn(c, job, sync, position));
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
