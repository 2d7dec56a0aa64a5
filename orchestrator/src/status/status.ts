import type { Config } from '../config/types.js';
import { pidfilePath } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../db/errors.js';
import { activeHolder as lockHolder } from '../daemon/job-lock.js';
import { isAlive, readPid } from '../daemon/pidfile.js';
import type { Logger } from '../util/logger.js';
import { lanePending } from './pending.js';
import { type CloneView, readClone } from '../clone/watch.js';

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
  /** Conflicts logged for the sync (multi-master), in all and in the last hour. */
  conflicts: number;
  conflictsLastHour: number;
  lanes: LaneStatus[];
}

export interface Status {
  job: string;
  /**
   * running/pid: the daemon of this host's pidfile. activeHolder: whichever
   * daemon of the job holds its lock (the active one, maybe on another host),
   * as "pid@host"; null when none is active.
   */
  daemon: { running: boolean; pid: number | null; pidfile: string; activeHolder: string | null };
  metadata: { reachable: boolean; error?: string };
  syncs: SyncStatus[];
  /** Clones queued or running, and those that failed in the last day (a failed clone does not make the job unhealthy). */
  clones: CloneView[];
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

export async function collectStatus(cfg: Config, logger: Logger): Promise<Status> {
  const pidfile = pidfilePath(cfg);
  const pid = await readPid(pidfile);
  const running = pid !== null && isAlive(pid);
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    let laneRows: LaneRow[] = [];
    let activeHolder: string | null = null;
    let clones: CloneView[] = [];
    let conflictCounts: { sync: string; total: string; last_hour: string }[] = [];
    const metadata: Status['metadata'] = { reachable: true };
    try {
      laneRows = (await conns.with(Connections.META, (c) => c.query<LaneRow>('SELECT * FROM repl.lane'))).rows;
      activeHolder = await conns.with(Connections.META, (c) => lockHolder(c, cfg.name));
      conflictCounts = (
        await conns.with(Connections.META, (c) =>
          c.query<{ sync: string; total: string; last_hour: string }>(
            `SELECT sync, count(*) AS total, count(*) FILTER (WHERE at > now() - interval '1 hour') AS last_hour FROM repl.conflict GROUP BY sync`,
          ),
        )
      ).rows;
      clones = await conns.with(Connections.META, async (c) => {
        const ids = await c.query<{ id: string }>(
          `SELECT id FROM repl.clone WHERE state IN ('queued', 'running') OR (state = 'failed' AND ended > now() - interval '1 day') ORDER BY id`,
        );
        return Promise.all(ids.rows.map((r) => readClone(c, Number(r.id))));
      });
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
            const p = await lanePending(conns, cfg.name, sync.name, source, target);
            if (p !== null) {
              lane.pendingRows = p.rows;
              lane.lagSeconds = Math.round(p.lagSeconds * 10) / 10;
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
        conflicts: Number(conflictCounts.find((c) => c.sync === sync.name)?.total ?? 0),
        conflictsLastHour: Number(conflictCounts.find((c) => c.sync === sync.name)?.last_hour ?? 0),
        lanes,
      });
    }
    return {
      job: cfg.name,
      daemon: { running, pid: running ? pid : null, pidfile, activeHolder },
      metadata,
      syncs,
      clones,
      healthy: running && activeHolder !== null && metadata.reachable && syncs.every((s) => s.state === 'ok'),
    };
  } finally {
    await conns.close();
  }
}
