import type { Config, SyncConfig } from '../config/types.js';
import { receiversOf, syncNodes } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { tableLabel } from '../db/ident.js';
import { sideInstalled } from '../db/schema-side.js';
import { CapraError } from '../util/errors.js';
import { publishTables } from './publish-tables.js';
import type { Logger } from '../util/logger.js';
import { forgetSync, registerConsumers, trackTable, trackedTables, untrackTable } from './consumers.js';
import { type CaptureMode, type DdlOptions, addCaptureTriggers, defaultCaptureMode, defaultDdlOptions, dropCaptureTriggers } from './ddl.js';
import { type TrackedTable, resolveSelection, tableProblemsOn } from './resolve.js';

export type TriggerProgress = (event: { node: string; table: string; action: 'added' | 'dropped' | 'waiting'; attempt?: number }) => void;

async function requireInstalled(conns: Connections, db: string): Promise<void> {
  const ok = await conns.with(db, (c) => sideInstalled(c, 'node'));
  if (!ok) throw new CapraError(`database ${db} has no repl schema: run capra install first`);
}

/**
 * `capra add-triggers` for one sync: resolves its tables on the first source,
 * checks them on every other node, registers a consumer per receiving node on
 * each source and puts the capture triggers on. Tables that left the
 * selection since the last run are taken off. Every table is checked before
 * anything is changed, and every problem found is reported at once. Returns
 * the captured tables (fullcopy tables are published for the clone path,
 * not captured).
 */
export async function addTriggers(
  cfg: Config,
  sync: SyncConfig,
  conns: Connections,
  logger: Logger,
  opts: { mode?: CaptureMode; ddl?: Partial<DdlOptions>; progress?: TriggerProgress } = {},
): Promise<TrackedTable[]> {
  for (const db of syncNodes(sync)) await requireInstalled(conns, db);
  const first = sync.sources[0]!;
  const { tables, fullcopy, problems } = await conns.with(first, (c) => resolveSelection(c, sync.tables, first, sync.sources.length > 1));
  if (problems.length === 0 && tables.length + fullcopy.length === 0)
    throw new CapraError(`sync ${sync.name}: the table selection matches no table on ${first}`);
  for (const db of syncNodes(sync)) {
    if (db === first) continue;
    await conns.with(db, async (c) => {
      for (const t of [...tables, ...fullcopy]) problems.push(...(await tableProblemsOn(c, t, db)));
    });
  }
  if (problems.length > 0) throw new CapraError(problems.join('; '));
  const ddl: DdlOptions = { ...defaultDdlOptions, ...opts.ddl };
  for (const source of sync.sources) {
    await conns.with(source, async (c) => {
      await registerConsumers(c, cfg.name, sync.name, receiversOf(sync, source), sync.kick.notify);
      const wanted = new Set(tables.map(tableLabel));
      for (const old of await trackedTables(c, cfg.name, sync.name)) {
        if (old.table != null && wanted.has(tableLabel(old))) continue;
        await untrackOne(c, cfg.name, sync.name, old, nodeDdl(ddl, conns, source, opts.progress));
        opts.progress?.({ node: source, table: old.table == null ? `relid ${old.relid}` : tableLabel(old), action: 'dropped' });
      }
      for (const t of tables) {
        const fires = await addCaptureTriggers(c, t, t.keyCols, opts.mode ?? defaultCaptureMode, nodeDdl(ddl, conns, source, opts.progress), () =>
          trackTable(c, cfg.name, sync.name, t, t.keyCols),
        );
        if (fires === 'origin') {
          logger.warn(
            { sync: sync.name, node: source, table: tableLabel(t) },
            'this role does not own the table, so its capture triggers do not fire under replica role: an applier that cascades into it does not use session_replication_role = replica there (its triggers and foreign keys fire); ALTER TABLE ... OWNER or run add-triggers as the owner to change that',
          );
        }
        opts.progress?.({ node: source, table: tableLabel(t), action: 'added' });
      }
    });
  }
  await conns.with(Connections.META, (c) => publishTables(c, sync.name, [...tables, ...fullcopy]));
  logger.info({ sync: sync.name, tables: tables.length }, 'capture triggers in place');
  return tables;
}

/** DDL options for one node: progress names it, and a cancel reaches its server. */
export function nodeDdl(ddl: DdlOptions, conns: Connections, node: string, progress?: TriggerProgress): DdlOptions {
  return {
    ...ddl,
    onRetry: (t, attempt) => progress?.({ node, table: tableLabel(t), action: 'waiting', attempt }),
    cancelBackend: async (pid) => {
      await conns.with(node, (c) => c.query('SELECT pg_cancel_backend($1)', [pid]));
    },
  };
}

/**
 * add-triggers for several syncs (all of the job's by default) on
 * connections of its own: what `capra add-triggers` does after
 * `capra install`, for the demo, benchmarks and tests.
 */
export async function addTriggersForSyncs(cfg: Config, logger: Logger, syncs: SyncConfig[] = Object.values(cfg.syncs)): Promise<void> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    for (const sync of syncs) await addTriggers(cfg, sync, conns, logger);
  } finally {
    await conns.close();
  }
}

export async function untrackOne(
  c: import('pg').ClientBase,
  job: string,
  sync: string,
  row: { relid: number; schema: string; table: string; shared: boolean },
  ddl: DdlOptions,
): Promise<void> {
  if (row.shared || row.table == null) {
    await untrackTable(c, job, sync, row.relid);
    return;
  }
  await dropCaptureTriggers(c, row, ddl, () => untrackTable(c, job, sync, row.relid));
}

/**
 * `capra drop-triggers` for one sync: forgets its consumers and positions and
 * takes the triggers off every table no other sync or job still captures.
 * An unreachable node is skipped with a warning; run it again once it is back.
 */
export async function dropTriggers(
  cfg: Config,
  sync: SyncConfig,
  conns: Connections,
  logger: Logger,
  opts: { ddl?: Partial<DdlOptions>; progress?: TriggerProgress } = {},
): Promise<void> {
  const ddl: DdlOptions = { ...defaultDdlOptions, ...opts.ddl };
  for (const db of syncNodes(sync)) {
    await conns.with(db, async (c) => {
      if (!(await sideInstalled(c, 'node'))) return;
      for (const row of await trackedTables(c, cfg.name, sync.name)) {
        await untrackOne(c, cfg.name, sync.name, row, nodeDdl(ddl, conns, db, opts.progress));
        opts.progress?.({ node: db, table: row.table == null ? `relid ${row.relid}` : tableLabel(row), action: 'dropped' });
      }
      await forgetSync(c, cfg.name, sync.name);
    });
  }
  try {
    await conns.with(Connections.META, (c) => publishTables(c, sync.name, []));
  } catch (err) {
    logger.warn({ sync: sync.name, err: String(err) }, 'could not clear the table list in the metadata database');
  }
}
