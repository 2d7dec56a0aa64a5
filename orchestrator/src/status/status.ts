import { type StoredResult, storedResults } from '../compare/results-store.js';
import type { Config, SyncConfig } from '../config/types.js';
import { pidfilePath } from '../config/types.js';
import { describeOptions } from '../config/table-options.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { errorNode, isConnectionError } from '../db/errors.js';
import { errorMessage } from '../util/errors.js';
import { activeHolder as lockHolder } from '../daemon/job-lock.js';
import { isAlive, readPid } from '../daemon/pidfile.js';
import type { Logger } from '../util/logger.js';
import { type LanePending, lanePosition, pendingAfter } from '../sync/lane-pending.js';
import { type CloneView, readClone } from '../clone/watch.js';
import { type PausedSync, readPaused } from '../daemon/control.js';
import { SQLSTATE, sqlState } from '../db/errors.js';

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
  /** paused: capra pause; nothing is applied, and it does not make the job unhealthy. */
  state: 'ok' | 'failing' | 'paused';
  /** When and by whom it was paused (null: it is not). */
  paused: { at: string; by: string | null } | null;
  lastOkAt: string | null;
  pendingRows: number | null;
  lagSeconds: number | null;
  /** Conflicts logged for the sync (multi-master), in all and in the last hour. */
  conflicts: number;
  conflictsLastHour: number;
  lanes: LaneStatus[];
  /** Each table with tables.options, its shape in one line (describeOptions); absent when none has any. */
  shapes?: string[];
  /** The last scheduled compare (the sync's `compare`), per table and compared database; absent when none ran. */
  compare?: StoredResult[];
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
  /** Databases that did not answer this status call (refused, or silent for STATUS_TIMEOUT_MS), with the error. */
  unanswered: { node: string; error: string }[];
  /** Why the job is not healthy, one line each (empty when it is). */
  problems: string[];
  healthy: boolean;
}

export interface StatusOptions {
  /** Also unhealthy when a lane's lag is above this many seconds (capra status --max-lag). */
  maxLagSeconds?: number;
}

/**
 * How long status waits on any one database: it asks them all at once, so a
 * node that hangs costs a status call about this much, whatever the nodes do.
 */
export const STATUS_TIMEOUT_MS = 3_000;

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

export async function collectStatus(cfg: Config, logger: Logger, opts: StatusOptions = {}): Promise<Status> {
  const pidfile = pidfilePath(cfg);
  const pid = await readPid(pidfile);
  const running = pid !== null && isAlive(pid);
  const conns = new Connections(cfg, 'capra-cli', logger, { timeoutMs: Math.min(STATUS_TIMEOUT_MS, cfg.nodeTimeoutSeconds * 1000) });
  const unanswered = new Map<string, string>();
  const noAnswer = (err: unknown, node?: string): void => {
    const who = errorNode(err) ?? node;
    if (who !== undefined && isConnectionError(err) && !unanswered.has(who)) unanswered.set(who, errorMessage(err));
  };
  try {
    const [meta, syncs] = await Promise.all([
      readMetadata(conns, cfg).catch((err: unknown) => {
        noAnswer(err, 'metadata');
        return errorMessage(err);
      }),
      Promise.all(Object.values(cfg.syncs).map((sync) => laneFigures(conns, cfg, sync, noAnswer))),
    ]);
    const metadata: Status['metadata'] = typeof meta === 'string' ? { reachable: false, error: meta } : { reachable: true };
    const m = typeof meta === 'string' ? null : meta;
    const now = Date.now();
    const syncStatuses = Object.values(cfg.syncs).map((sync, i) => syncStatus(cfg, sync, syncs[i]!, m, now));
    const activeHolder = m?.activeHolder ?? null;
    const problems: string[] = [];
    if (!running) problems.push(`the daemon is not running (pidfile ${pidfile})`);
    if (!metadata.reachable) problems.push(`the metadata database does not answer: ${metadata.error}`);
    else if (activeHolder === null) problems.push('no daemon of the job is active');
    for (const s of syncStatuses) {
      if (s.paused) continue;
      for (const l of s.lanes) {
        if (l.state === 'failing' || l.state === 'unreachable')
          problems.push(`sync ${s.name}, ${l.source} -> ${l.target}: ${l.state}${l.error ? `: ${l.error}` : ''}`);
        else if (opts.maxLagSeconds !== undefined && l.lagSeconds !== null && l.lagSeconds > opts.maxLagSeconds) {
          problems.push(`sync ${s.name}, ${l.source} -> ${l.target}: lag ${l.lagSeconds} s is above --max-lag ${opts.maxLagSeconds}`);
        }
      }
    }
    return {
      job: cfg.name,
      daemon: { running, pid: running ? pid : null, pidfile, activeHolder },
      metadata,
      syncs: syncStatuses,
      clones: m?.clones ?? [],
      unanswered: [...unanswered].map(([node, error]) => ({ node, error })),
      problems,
      healthy: problems.length === 0,
    };
  } finally {
    await conns.close();
  }
}

interface MetadataView {
  laneRows: LaneRow[];
  activeHolder: string | null;
  conflictCounts: { sync: string; total: string; last_hour: string }[];
  clones: CloneView[];
  paused: PausedSync[];
  compares: StoredResult[];
}

async function readMetadata(conns: Connections, cfg: Config): Promise<MetadataView> {
  return conns.with(Connections.META, async (c) => {
    const laneRows = (await c.query<LaneRow>('SELECT * FROM repl.lane')).rows;
    const activeHolder = await lockHolder(c, cfg.name);
    const conflictCounts = (
      await c.query<{ sync: string; total: string; last_hour: string }>(
        `SELECT sync, count(*) AS total, count(*) FILTER (WHERE at > now() - interval '1 hour') AS last_hour FROM repl.conflict GROUP BY sync`,
      )
    ).rows;
    const ids = await c.query<{ id: string }>(
      `SELECT id FROM repl.clone WHERE state IN ('queued', 'running') OR (state = 'failed' AND ended > now() - interval '1 day') ORDER BY id`,
    );
    const clones: CloneView[] = [];
    for (const r of ids.rows) clones.push(await readClone(c, Number(r.id)));
    // A metadata database installed before pauses existed has none.
    const paused = await readPaused(c).catch((err: unknown) => {
      if (sqlState(err) === SQLSTATE.undefinedTable) return [];
      throw err;
    });
    // A metadata database installed before compare existed has no results.
    const compares = await storedResults(c).catch((err: unknown) => {
      if (sqlState(err) === SQLSTATE.undefinedTable) return [];
      throw err;
    });
    return { laneRows, activeHolder, conflictCounts, clones, paused, compares };
  });
}

/** What the nodes say of one lane: pending rows and lag, or why they could not tell. */
interface LaneFigures {
  source: string;
  target: string;
  pending: LanePending | null;
  /** A node of the lane did not answer (or the source could not be read): the error. */
  error?: string;
}

async function laneFigures(conns: Connections, cfg: Config, sync: SyncConfig, noAnswer: (err: unknown, node?: string) => void): Promise<LaneFigures[]> {
  const pairs = sync.sources.flatMap((source) => receiversOf(sync, source).map((target) => ({ source, target })));
  return Promise.all(
    pairs.map(async ({ source, target }): Promise<LaneFigures> => {
      try {
        const { position, targetError } = await lanePosition(conns, cfg.name, sync.name, source, target);
        const pending = position === null ? null : await pendingAfter(conns, cfg.name, sync.name, source, position);
        if (targetError !== undefined) {
          noAnswer(targetError, target);
          if (isConnectionError(targetError)) return { source, target, pending, error: errorMessage(targetError) };
        }
        return { source, target, pending };
      } catch (err) {
        noAnswer(err, source);
        return { source, target, pending: null, error: errorMessage(err) };
      }
    }),
  );
}

function syncStatus(cfg: Config, sync: SyncConfig, figures: LaneFigures[], meta: MetadataView | null, now: number): SyncStatus {
  // A lane with changes pending that has not run successfully for this long is stuck, whatever it last recorded.
  const stuckAfterS = cfg.nodeTimeoutSeconds + (sync.kick.notify ? 0 : cfg.pollSeconds);
  const pause = meta?.paused.find((p) => p.sync === sync.name);
  const lanes = figures.map((f): LaneStatus => {
    const row = meta?.laneRows.find((l) => l.sync === sync.name && l.source === f.source && l.target === f.target);
    const lane: LaneStatus = {
      source: f.source,
      target: f.target,
      state: row ? (row.state === 'failing' ? 'failing' : 'ok') : 'not run yet',
      lastOkAt: row?.last_ok_at?.toISOString() ?? null,
      lastRunAt: row?.last_run_at?.toISOString() ?? null,
      rowsApplied: Number(row?.rows_applied ?? 0),
      pendingRows: f.pending?.rows ?? null,
      lagSeconds: f.pending ? Math.round(f.pending.lagSeconds * 10) / 10 : null,
      error: row?.error ?? null,
      errorTable: row?.error_table ?? null,
      replicaRole: row?.replica_role ?? null,
    };
    if (f.error !== undefined) {
      lane.state = 'unreachable';
      lane.error = f.error;
    } else if (!pause && lane.state === 'ok' && f.pending && f.pending.rows > 0 && f.pending.lagSeconds > stuckAfterS) {
      const quietS = row?.last_ok_at ? (now - row.last_ok_at.getTime()) / 1000 : Infinity;
      if (quietS > stuckAfterS) {
        lane.state = 'failing';
        lane.error = `no progress for ${Math.round(Math.min(quietS, f.pending.lagSeconds))} s with ${f.pending.rows} change(s) pending`;
      }
    }
    return lane;
  });
  const known = <T>(xs: (T | null)[]): T[] => xs.filter((x): x is T => x !== null);
  const oks = known(lanes.map((l) => l.lastOkAt)).sort();
  const counts = meta?.conflictCounts.find((c) => c.sync === sync.name);
  const compared = meta?.compares.filter((c) => c.sync === sync.name) ?? [];
  return {
    name: sync.name,
    state: pause ? 'paused' : lanes.some((l) => l.state === 'failing' || l.state === 'unreachable') ? 'failing' : 'ok',
    paused: pause ? { at: pause.pausedAt.toISOString(), by: pause.pausedBy } : null,
    lastOkAt: lanes.every((l) => l.lastOkAt !== null) ? (oks[0] ?? null) : null,
    pendingRows: lanes.some((l) => l.pendingRows === null) ? null : lanes.reduce((n, l) => n + (l.pendingRows ?? 0), 0),
    lagSeconds: lanes.some((l) => l.lagSeconds === null) ? null : Math.max(0, ...known(lanes.map((l) => l.lagSeconds))),
    conflicts: Number(counts?.total ?? 0),
    conflictsLastHour: Number(counts?.last_hour ?? 0),
    lanes,
    ...(sync.tables.options ? { shapes: Object.entries(sync.tables.options).map(([ref, o]) => describeOptions(ref, o)) } : {}),
    ...(compared.length > 0 ? { compare: compared } : {}),
  };
}
