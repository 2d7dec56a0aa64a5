import type pg from 'pg';
import type { Config } from '../config/types.js';
import { pidfilePath } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../db/errors.js';
import { isAlive, readPid } from '../daemon/pidfile.js';
import type { Logger } from '../util/logger.js';

export interface LaneStatus {
  source: string;
  target: string;
  state: 'ok' | 'failing' | 'not run yet' | 'unreachable';
  lastOkAt: string | null;
  lastRunAt: string | null;
  rowsApplied: number;
  /** Changed rows committed on the source and not yet applied on the target (null: unknown). */
  pendingRows: number | null;
  /** Age in seconds of the oldest such change (0 when none; null: unknown). */
  lagSeconds: number | null;
  error: string | null;
  errorTable: string | null;
  /**
   * Whether the applier may set session_replication_role = replica on the
   * target (null: not known yet). When false the target's own triggers and
   * foreign keys fire for applied rows.
   */
  replicaRole: boolean | null;
}

export interface SyncStatus {
  name: string;
  state: 'ok' | 'failing';
  lastOkAt: string | null;
  pendingRows: number | null;
  lagSeconds: number | null;
  conflicts: number;
  lanes: LaneStatus[];
}

export interface Status {
  job: string;
  daemon: { running: boolean; pid: number | null; pidfile: string };
  metadata: { reachable: boolean; error?: string };
  syncs: SyncStatus[];
  healthy: boolean;
}

interface LaneRow {
  sync: string;
  source: string;
  target: string;
  state: string;
  last_ok_at: Date | null;
  last_run_at: Date | null;
  rows_applied: string;
  error: string | null;
  error_table: string | null;
  replica_role: boolean | null;
}

/** Rows pending for one lane and the age of the oldest, read on the source against the target's position. */
async function pending(source: pg.ClientBase, job: string, sync: string, position: string): Promise<{ rows: number; lag: number }> {
  const r = await source.query<{ n: string; lag: number | null }>(
    `SELECT count(*) AS n, extract(epoch FROM now() - min(d.at))::float8 AS lag FROM repl.delta d
      WHERE d.txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(d.txid, $1::pg_snapshot)
        AND d.relid IN (SELECT relid FROM repl.consumer_table WHERE job = $2 AND sync = $3)
        AND d.origin IS DISTINCT FROM $2`,
    [position, job, sync],
  );
  return { rows: Number(r.rows[0]!.n), lag: Math.max(0, r.rows[0]!.lag ?? 0) };
}

async function positionOf(conns: Connections, job: string, sync: string, source: string, target: string): Promise<string | null> {
  // The target's own record is authoritative; the source's copy (for purge) may lag behind it.
  try {
    const r = await conns.with(target, (c) =>
      c.query<{ p: string }>('SELECT position::text AS p FROM repl.applied WHERE job = $1 AND sync = $2 AND source = $3', [job, sync, source]),
    );
    if (r.rows[0]) return r.rows[0].p;
  } catch {
    // fall back to the source's copy
  }
  const r = await conns.with(source, (c) =>
    c.query<{ p: string }>('SELECT position::text AS p FROM repl.consumer WHERE job = $1 AND sync = $2 AND target = $3', [job, sync, target]),
  );
  return r.rows[0]?.p ?? null;
}

export async function collectStatus(cfg: Config, logger: Logger): Promise<Status> {
  const pidfile = pidfilePath(cfg);
  const pid = await readPid(pidfile);
  const running = pid !== null && isAlive(pid);
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    let laneRows: LaneRow[] = [];
    const metadata: Status['metadata'] = { reachable: true };
    try {
      laneRows = (await conns.with(Connections.META, (c) => c.query<LaneRow>('SELECT * FROM repl.lane'))).rows;
    } catch (err) {
      metadata.reachable = false;
      metadata.error = errorMessage(err);
    }
    const syncs: SyncStatus[] = [];
    for (const sync of Object.values(cfg.syncs)) {
      const lanes: LaneStatus[] = [];
      for (const source of sync.sources) {
        for (const target of receiversOf(sync, source)) {
          const row = laneRows.find((l) => l.sync === sync.name && l.source === source && l.target === target);
          const lane: LaneStatus = {
            source,
            target,
            state: row ? (row.state === 'failing' ? 'failing' : 'ok') : 'not run yet',
            lastOkAt: row?.last_ok_at?.toISOString() ?? null,
            lastRunAt: row?.last_run_at?.toISOString() ?? null,
            rowsApplied: Number(row?.rows_applied ?? 0),
            pendingRows: null,
            lagSeconds: null,
            error: row?.error ?? null,
            errorTable: row?.error_table ?? null,
            replicaRole: row?.replica_role ?? null,
          };
          try {
            const pos = await positionOf(conns, cfg.name, sync.name, source, target);
            if (pos !== null) {
              const p = await conns.with(source, (c) => pending(c, cfg.name, sync.name, pos));
              lane.pendingRows = p.rows;
              lane.lagSeconds = Math.round(p.lag * 10) / 10;
            }
          } catch (err) {
            lane.state = 'unreachable';
            lane.error = errorMessage(err);
          }
          lanes.push(lane);
        }
      }
      const known = <T>(xs: (T | null)[]): T[] => xs.filter((x): x is T => x !== null);
      const oks = known(lanes.map((l) => l.lastOkAt)).sort();
      syncs.push({
        name: sync.name,
        state: lanes.some((l) => l.state === 'failing' || l.state === 'unreachable') ? 'failing' : 'ok',
        lastOkAt: lanes.every((l) => l.lastOkAt !== null) ? (oks[0] ?? null) : null,
        pendingRows: lanes.some((l) => l.pendingRows === null) ? null : lanes.reduce((n, l) => n + (l.pendingRows ?? 0), 0),
        lagSeconds: lanes.some((l) => l.lagSeconds === null) ? null : Math.max(0, ...known(lanes.map((l) => l.lagSeconds))),
        conflicts: 0,
        lanes,
      });
    }
    return {
      job: cfg.name,
      daemon: { running, pid: running ? pid : null, pidfile },
      metadata,
      syncs,
      healthy: running && metadata.reachable && syncs.every((s) => s.state === 'ok'),
    };
  } finally {
    await conns.close();
  }
}
