import { type TableOptions, optionsFor } from '../config/table-options.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import { type TableName, tableLabel } from '../db/ident.js';
import type { ApplierRole } from '../sync/applier-session.js';
import type { Logger } from '../util/logger.js';
import { lanesInto } from './lane-locks.js';
import { checkClonePrivileges } from './privileges.js';
import { CloneProgress } from './progress.js';
import { CloneCancelled, type CloneRequest, receiversOf } from './request.js';
import { copyTable } from './table-copy.js';

export interface ExecuteOptions {
  /** Aborts the clone (daemon stopping); its open table copies roll back. */
  signal?: AbortSignal;
  /** How often progress is written to repl.clone_table (and a cancel looked for). */
  progressEveryMs?: number;
  /** Mark the receivers' sessions as cascading (the clone's sync has cascade: true). */
  cascade?: boolean;
  /** The clone's sync's tables.options: tables are copied in their shape (target name, columns, expressions, filter). */
  options?: Record<string, TableOptions>;
}

/** How a clone that did not fail ended. */
export type CloneOutcome = 'done' | 'cancelled';

/**
 * Carries out a clone, table after table (see copyTable), writing its
 * progress to the metadata database as it goes. Stops at the first table
 * that fails (throws; tables copied before it stay copied), or when a cancel
 * is asked for (repl.clone_cancel) or the signal aborts: the table being
 * copied is left as it was.
 */
export async function executeClone(conns: Connections, job: string, req: CloneRequest, logger: Logger, opts: ExecuteOptions = {}): Promise<CloneOutcome> {
  const log = logger.child({ clone: req.id });
  const progress = new CloneProgress(req.id);
  for (const t of req.tables) for (const r of receiversOf(req)) progress.entry(t, r.db);
  const abort = new AbortController();
  const onStop = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onStop);
  if (opts.signal?.aborted) onStop();

  let cancelled = false;
  let outcome: CloneOutcome | 'failed' = 'failed';
  const flush = async (): Promise<void> => {
    try {
      if (await conns.with(Connections.META, (c) => progress.flush(c))) {
        cancelled = true;
        abort.abort(new CloneCancelled(req.id));
      }
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'clone: cannot record progress');
    }
  };
  let flushing: Promise<void> | null = null;
  const timer = setInterval(() => void (flushing ??= flush().finally(() => (flushing = null))), opts.progressEveryMs ?? 1000);
  try {
    // Before any table is emptied: a missing grant refuses the whole clone, naming it.
    await checkClonePrivileges(conns, req);
    const lanes = await conns.with(Connections.META, (c) => lanesInto(c, req.tables));
    const roles = new Map<string, ApplierRole>();
    for (const t of req.tables) {
      if (abort.signal.aborted) break;
      const started = Date.now();
      const options = (x: TableName): TableOptions | undefined => optionsFor(opts.options ?? {}, x);
      const format = await copyTable(
        { conns, job, req, cascade: opts.cascade ?? false, lanes, progress, signal: abort.signal, logger: log, roles, options },
        t,
      );
      const done = progress.all().filter((e) => e.schema === t.schema && e.table === t.table && e.state === 'done');
      log.info({ table: tableLabel(t), rows: Math.max(0, ...done.map((e) => e.rows)), format, ms: Date.now() - started }, 'clone: table copied');
    }
    if (!cancelled && abort.signal.aborted) throw abort.signal.reason;
    outcome = cancelled ? 'cancelled' : 'done';
    return outcome;
  } catch (err) {
    if (!cancelled) throw err;
    outcome = 'cancelled';
    return outcome;
  } finally {
    clearInterval(timer);
    // Tables not reached: cancelled with the clone, or after a failure; left queued when the daemon stops (it runs again).
    if (outcome === 'cancelled' || !opts.signal?.aborted) {
      const note = outcome === 'cancelled' ? 'cancelled' : 'not attempted: an earlier table failed';
      for (const e of progress.all()) if (e.state === 'queued') Object.assign(e, { state: 'cancelled', note });
    }
    opts.signal?.removeEventListener('abort', onStop);
    await flushing;
    await flush();
  }
}
