import { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { LoggedConflict } from '../sync/swap-settle.js';

/** What one run of a lane did, for the metadata database. */
export interface RunRecord {
  sync: string;
  source: string;
  target: string;
  started: Date;
  ended: Date;
  rows: number;
  error?: string;
  errorTable?: string;
  /** Whether the target accepted session_replication_role = replica (undefined: not known yet). */
  replicaRole?: boolean;
}

/**
 * Writes lane state and run history to the metadata database off the
 * critical path: runs never wait on it, and an unreachable metadata database
 * costs log lines, not replication. Idle runs update the lane row only.
 */
export class Recorder {
  private queue: RunRecord[] = [];
  /** Conflicts not yet in the log; kept across failed flushes (up to a bound), since each is recorded once. */
  private pendingConflicts: LoggedConflict[] = [];
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly conns: Connections,
    private readonly logger: Logger,
    /** Told of every run at once (metrics). */
    private readonly onRecord?: (r: RunRecord) => void,
  ) {}

  record(r: RunRecord): void {
    this.onRecord?.(r);
    this.queue.push(r);
    this.kick();
  }

  /** Adds settled conflicts to the conflict log (repl.conflict). */
  conflicts(list: LoggedConflict[]): void {
    this.pendingConflicts.push(...list);
    const over = this.pendingConflicts.length - MAX_PENDING_CONFLICTS;
    if (over > 0) {
      this.pendingConflicts.splice(0, over);
      this.logger.warn({ dropped: over }, 'conflict log backlog too long: oldest entries dropped (they are in the daemon log)');
    }
    this.kick();
  }

  private kick(): void {
    if (!this.flushing) this.flushing = this.flush().finally(() => (this.flushing = null));
  }

  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flush(): Promise<void> {
    await this.flushConflicts();
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.queue.length);
      try {
        await this.conns.with(Connections.META, async (c) => {
          for (const r of batch) {
            const ok = r.error === undefined;
            await c.query(
              `INSERT INTO repl.lane AS l (sync, source, target, state, last_run_at, last_ok_at, rows_applied, error, error_table, error_at, replica_role)
               VALUES ($1, $2, $3, $4, $5::timestamptz, CASE WHEN $6::boolean THEN $5::timestamptz END, $7, $8, $9,
                       CASE WHEN $6::boolean THEN NULL ELSE $5::timestamptz END, $10)
               ON CONFLICT (sync, source, target) DO UPDATE SET
                 state = EXCLUDED.state, last_run_at = EXCLUDED.last_run_at,
                 last_ok_at = coalesce(EXCLUDED.last_ok_at, l.last_ok_at),
                 rows_applied = l.rows_applied + EXCLUDED.rows_applied,
                 error = EXCLUDED.error, error_table = EXCLUDED.error_table,
                 error_at = coalesce(EXCLUDED.error_at, l.error_at),
                 replica_role = coalesce(EXCLUDED.replica_role, l.replica_role)`,
              [r.sync, r.source, r.target, ok ? 'ok' : 'failing', r.ended, ok, r.rows, r.error ?? null, r.errorTable ?? null, r.replicaRole ?? null],
            );
            if (!ok || r.rows > 0) {
              await c.query(`INSERT INTO repl.run (sync, source, target, started, ended, rows, ok, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
                r.sync,
                r.source,
                r.target,
                r.started,
                r.ended,
                r.rows,
                ok,
                r.error ?? null,
              ]);
            }
          }
        });
      } catch (err) {
        this.logger.warn({ err: errorMessage(err), dropped: batch.length }, 'could not record runs in the metadata database');
      }
    }
  }

  private async flushConflicts(): Promise<void> {
    if (this.pendingConflicts.length === 0) return;
    const batch = this.pendingConflicts.splice(0, this.pendingConflicts.length);
    const rows = batch.map((c) => ({
      sync: c.sync,
      table_name: c.table,
      key: c.key,
      versions: c.versions.map((v) => ({ db: v.db, changed_at: v.changedAt, clock: v.clock, row: v.row })),
      strategy: c.rule,
      decision: c.decision.kind,
      winner: c.decision.kind === 'winner' ? c.decision.db : null,
      detail: c.decision.kind === 'winner' ? (c.decision.detail ?? null) : c.decision.kind === 'merged' ? { row: c.decision.row } : null,
    }));
    try {
      await this.conns.with(Connections.META, (c) =>
        c.query(
          `INSERT INTO repl.conflict (sync, table_name, key, versions, strategy, decision, winner, detail)
           SELECT sync, table_name, key, versions, strategy, decision, winner, detail
             FROM jsonb_to_recordset($1::jsonb) AS r(sync text, table_name text, key jsonb, versions jsonb, strategy text, decision text, winner text, detail jsonb)`,
          [JSON.stringify(rows)],
        ),
      );
    } catch (err) {
      this.pendingConflicts.unshift(...batch);
      this.logger.warn({ err: errorMessage(err), pending: this.pendingConflicts.length }, 'could not write the conflict log; will try again');
    }
  }
}

const MAX_PENDING_CONFLICTS = 100_000;
