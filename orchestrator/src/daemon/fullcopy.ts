import cron from 'node-cron';
import type pg from 'pg';
import { parseOptionsKey } from '../config/table-options.js';
import type { Config } from '../config/types.js';
import { Connections } from '../db/connections.js';
import { quoteTable, tableLabel } from '../db/ident.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/**
 * fullcopy (tables.options): a table too churned for row identity is not
 * captured; on its cron schedule the daemon queues a clone of it from the
 * sync's source to its targets (repl.clone), which the clone runner carries
 * out like any other: one transaction per target, so each target has the
 * old contents or the new, with progress in repl.clone_table (capra clone
 * --list, --watch). A copy still queued or running is not queued again.
 */
export function scheduleFullcopies(cfg: Config, conns: Connections, logger: Logger): { stop(): void | Promise<void> }[] {
  const tasks: { stop(): void | Promise<void> }[] = [];
  for (const sync of Object.values(cfg.syncs)) {
    for (const [ref, o] of Object.entries(sync.tables.options ?? {})) {
      if (o.fullcopy === undefined) continue;
      const t = parseOptionsKey(ref);
      const log = logger.child({ sync: sync.name, table: tableLabel(t) });
      const run = async (): Promise<void> => {
        try {
          const id = await conns.with(Connections.META, (c) => queueFullcopy(c, sync.name, t));
          if (id !== null) log.info({ clone: id }, 'fullcopy queued');
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'fullcopy: cannot queue the copy; the next tick tries again');
        }
      };
      tasks.push(cron.schedule(o.fullcopy, () => void run(), { name: `capra-${cfg.name}-${sync.name}-fullcopy-${tableLabel(t)}` }));
    }
  }
  return tasks;
}

/** Queues a clone of one table of a sync unless one is queued or running; returns its id (null: one was there). */
export async function queueFullcopy(meta: pg.ClientBase, sync: string, t: { schema: string; table: string }): Promise<number | null> {
  const r = await meta.query<{ id: string | null }>(
    `SELECT CASE WHEN EXISTS (SELECT 1 FROM repl.clone c WHERE c.sync = $1 AND c.state IN ('queued', 'running')
                               AND c.tables @> jsonb_build_array(jsonb_build_object('schema', $2::text, 'table', $3::text)))
                 THEN NULL ELSE repl.clone(sync => $1, tables => ARRAY[$4]) END AS id`,
    [sync, t.schema, t.table, quoteTable(t)],
  );
  const id = r.rows[0]?.id ?? null;
  return id === null ? null : Number(id);
}
