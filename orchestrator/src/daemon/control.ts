import { hostname, userInfo } from 'node:os';
import type pg from 'pg';

// The job's control requests, as the CLI sends them to the active daemon
// wherever it runs: through the metadata database, never a signal (the
// daemon may be on another host). Pauses are rows, so they outlive the
// daemon and reach a standby; kicks and the news of a pause or resume are
// NOTIFYs on the job's control channel, which the active daemon LISTENs on.

/** Who runs the CLI, for the record of a pause. */
function operator(): string {
  let user = process.env.USER ?? '?';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (a container): $USER stands
  }
  return `${user}@${hostname()}`;
}

/** The metadata database's channel the job's active daemon listens on for control requests. */
export function controlChannel(job: string): string {
  return `capra_control_${job}`.slice(0, 63);
}

/** What a control NOTIFY asks: run now (the syncs named, every one when none), or re-read the pauses. */
export type ControlRequest = { op: 'kick'; syncs: string[] } | { op: 'pause' | 'resume'; syncs: string[] };

export function parseControl(payload: string | undefined): ControlRequest | null {
  try {
    const r = JSON.parse(payload ?? '') as Partial<ControlRequest>;
    if ((r.op === 'kick' || r.op === 'pause' || r.op === 'resume') && Array.isArray(r.syncs)) return { op: r.op, syncs: r.syncs.map(String) };
  } catch {
    // not ours: ignored
  }
  return null;
}

/** Sends a control request to the job's active daemon (delivered when the caller's transaction, if any, commits). */
export async function sendControl(meta: pg.ClientBase, job: string, req: ControlRequest): Promise<void> {
  await meta.query('SELECT pg_notify($1, $2)', [controlChannel(job), JSON.stringify(req)]);
}

export interface PausedSync {
  sync: string;
  pausedAt: Date;
  pausedBy: string | null;
}

/** The job's paused syncs. */
export async function readPaused(meta: pg.ClientBase): Promise<PausedSync[]> {
  const r = await meta.query<{ sync: string; paused_at: Date; paused_by: string | null }>(
    'SELECT sync, paused_at, paused_by FROM repl.sync_pause ORDER BY sync',
  );
  return r.rows.map((x) => ({ sync: x.sync, pausedAt: x.paused_at, pausedBy: x.paused_by }));
}

/**
 * Pauses or resumes syncs and tells the active daemon, in one transaction
 * (the NOTIFY goes out with the commit, so the daemon reads the new rows).
 * Returns the syncs whose state changed.
 */
export async function setPaused(meta: pg.ClientBase, job: string, syncs: string[], paused: boolean): Promise<string[]> {
  await meta.query('BEGIN');
  try {
    const r = paused
      ? await meta.query<{ sync: string }>(
          'INSERT INTO repl.sync_pause (sync, paused_by) SELECT unnest($1::text[]), $2 ON CONFLICT (sync) DO NOTHING RETURNING sync',
          [syncs, operator()],
        )
      : await meta.query<{ sync: string }>('DELETE FROM repl.sync_pause WHERE sync = ANY ($1::text[]) RETURNING sync', [syncs]);
    await sendControl(meta, job, { op: paused ? 'pause' : 'resume', syncs });
    await meta.query('COMMIT');
    return r.rows.map((x) => x.sync).sort();
  } catch (err) {
    await meta.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
