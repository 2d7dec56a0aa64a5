import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { type Connections, discardConnection } from '../db/connections.js';
import { SQLSTATE, isConnectionError, sqlState } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { type TableName, onlyUnlessPartitioned, quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { type ApplierRole, markApplier } from '../sync/applier-session.js';
import { PIN_OUTPUT_FORMATS, inLockOrder } from '../sync/delta-log.js';
import { matchOnTarget, sourceTables } from '../sync/table-meta.js';
import { type TableShape, selectItems, whereFilter } from '../sync/table-shape.js';
import type { TableOptions } from '../config/table-options.js';
import { cloneShape } from './clone-shape.js';
import type { Logger } from '../util/logger.js';
import { type ColumnTypes, type CopyFormat, chooseFormat, columnTypes } from './copy-format.js';
import { fanOut } from './fan-out.js';
import { type DroppedIndex, dropAboveOf, dropIndexes, rebuildIndexes } from './index-drop.js';
import { type LaneRef, lockLanes } from './lane-locks.js';
import type { CloneProgress } from './progress.js';
import { CloneCancelled, type CloneRequest, type CloneTable, receiversOf, sourcesOf } from './request.js';
import { binaryRowCounter, textRowCounter } from './row-count.js';

export interface TableCopyContext {
  conns: Connections;
  job: string;
  req: CloneRequest;
  /** Marks the receivers' sessions with capra.cascade (the clone's sync cascades). */
  cascade: boolean;
  lanes: (t: TableName, receiver: string) => LaneRef[];
  progress: CloneProgress;
  signal: AbortSignal;
  logger: Logger;
  /** Per receiving database: whether it takes session_replication_role = replica. */
  roles: Map<string, ApplierRole>;
  /** A table's tables.options in the clone's sync (target name, columns, expressions, filter); none: copied as it is. */
  options?: (t: TableName) => TableOptions | undefined;
}

interface Side {
  db: string;
  client: pg.PoolClient;
  /** The table is partitioned here: read or written through its parent, all partitions at once. */
  partitioned?: boolean;
  /** The client's state is unknown (an aborted COPY): do not reuse it. */
  broken?: Error;
}

interface Receiver extends Side {
  truncate: boolean;
  /** Emptied by TRUNCATE in this transaction: COPY may write the rows frozen. */
  freeze: boolean;
  indexes: DroppedIndex[];
}

/**
 * Copies one table from the clone's source(s) into every receiving database,
 * one transaction per receiver: emptied (targets, one source) and filled by
 * COPY, or left as it was when anything fails. Each source is read once, in
 * one snapshot taken after the lanes into the receivers are locked (see
 * lockLanes), and its COPY stream feeds every receiver at once, in binary
 * where every side can take it (see chooseFormat). Returns that format.
 */
export async function copyTable(ctx: TableCopyContext, t: CloneTable): Promise<CopyFormat> {
  const { conns, req } = ctx;
  const label = tableLabel(t);
  const receivers: Receiver[] = [];
  const sources: Side[] = [];
  /** The receiver whose COPY failed first, to name it. */
  let failedOn: string | undefined;
  // A statement waiting on a lock (TRUNCATE behind a long reader) or in a slow trigger does not see the
  // signal: cancel it on the server, so a cancel or a stop takes effect at once.
  const onAbort = (): void => {
    for (const s of [...receivers, ...sources]) void cancelBackend(conns, s).catch(() => {});
  };
  ctx.signal.addEventListener('abort', onAbort);
  try {
    ctx.signal.throwIfAborted();
    for (const r of receiversOf(req)) {
      const client = await conns.connect(r.db);
      // Targets are emptied; sources receiving the other sources' rows are not.
      receivers.push({ db: r.db, client, truncate: r.role === 'target', freeze: false, indexes: [] });
    }
    // Lock the lanes first: the sources' snapshots must come after.
    for (const r of inLockOrder(receivers, (x) => x.db)) {
      await r.client.query('BEGIN');
      const role = ctx.roles.get(r.db) ?? {};
      ctx.roles.set(r.db, role);
      await markApplier(r.client, ctx.job, ctx.cascade, role);
      await lockLanes(r.client, r.db, conns, ctx.job, ctx.lanes(t, r.db));
    }
    for (const db of sourcesOf(req)) {
      sources.push({ db, client: await conns.connect(db) });
    }
    // Checked on the source, outside its snapshot's read-only transaction (see clone-shape.ts).
    const options = ctx.options?.(t);
    const shape: TableShape | undefined = options ? await cloneShape(sources[0]!.client, t, options, sources[0]!.db) : undefined;
    /** The table on the receivers. */
    const tgt: TableName = shape?.target ?? t;
    let columns: string[] | null = null;
    let estRows: number | null = null;
    const types: ColumnTypes[] = [];
    for (const s of sources) {
      await s.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      // A partitioned table's estimate is its leaf partitions'.
      const head = await s.client.query<{ relid: number | null; est: number | null }>(
        `SELECT c.oid::int AS relid,
                CASE WHEN c.relkind = 'p'
                     THEN (SELECT sum(greatest(l.reltuples, 0))::float8 FROM pg_partition_tree(c.oid) p JOIN pg_class l ON l.oid = p.relid WHERE p.isleaf)
                     ELSE c.reltuples::float8 END AS est,
                ${PIN_OUTPUT_FORMATS}
           FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid`,
        [quoteTable(t)],
      );
      const relid = head.rows[0]!.relid;
      if (relid === null) throw new CapraError(`table ${label} does not exist on ${s.db}`, { table: label });
      const meta = await sourceTables(s.client, [relid]);
      s.partitioned = meta.get(relid)!.partitioned;
      columns ??= shape ? shape.written : meta.get(relid)!.columns;
      const est = head.rows[0]!.est;
      if (est !== null && est >= 0) estRows = (estRows ?? 0) + est;
      // Every receiver must have the same columns (the check names what differs).
      const shapes = shape ? new Map([[relid, shape]]) : undefined;
      for (const r of receivers) r.partitioned = (await matchOnTarget(r.client, meta, new Map(), r.db, shapes))[0]!.targetPartitioned;
      types.push(await columnTypes(s.client, t));
    }
    for (const r of receivers) types.push(await columnTypes(r.client, tgt));
    // An expression's type is the source's to choose: text is read by the target's column type.
    const format = shape ? 'text' : chooseFormat(columns!, types);
    const cols = columns!.map(quoteIdent).join(', ');

    const active: Receiver[] = [];
    for (const r of receivers) {
      if (req.onlyEmpty) {
        const has = await r.client.query(`SELECT 1 FROM ${onlyUnlessPartitioned(r.partitioned)}${quoteTable(tgt)} LIMIT 1`);
        if (has.rowCount) {
          await r.client.query('COMMIT');
          ctx.progress.set(t, r.db, { state: 'skipped', note: 'not empty', ended: new Date() });
          ctx.logger.info({ table: label, target: r.db }, 'clone: table not empty, skipped');
          continue;
        }
      }
      ctx.progress.set(t, r.db, { state: 'running', started: new Date(), estRows: estRows === null ? null : Math.round(estRows), rows: 0, bytes: 0 });
      // Measured before the table is emptied: its indexes' sizes are what the threshold is about.
      const above = dropAboveOf(req, t);
      if (above !== null) r.indexes = await dropIndexes(r.client, tgt, above, ctx.logger.child({ target: r.db }));
      if (r.truncate) r.freeze = await emptyTable(r, tgt);
      active.push(r);
    }

    for (const s of sources) {
      const into = active.filter((r) => r.db !== s.db);
      if (into.length === 0) continue;
      const binary = format === 'binary' ? ' (FORMAT binary)' : '';
      // COPY TO reads a partitioned table only through a query.
      const what = shape
        ? `(SELECT ${selectItems({ shape }, columns!, 's')} FROM ${onlyUnlessPartitioned(s.partitioned)}${quoteTable(t)} s${whereFilter({ shape })})`
        : s.partitioned
          ? `(SELECT ${cols} FROM ${quoteTable(t)})`
          : `${quoteTable(t)} (${cols})`;
      const out = s.client.query(copyTo(`COPY ${what} TO STDOUT${binary}`));
      const ins = into.map((r) => {
        const options = [...(format === 'binary' ? ['FORMAT binary'] : []), ...(r.freeze ? ['FREEZE'] : [])];
        return r.client.query(copyFrom(`COPY ${quoteTable(tgt)} (${cols}) FROM STDIN${options.length > 0 ? ` WITH (${options.join(', ')})` : ''}`));
      });
      const entries = into.map((r) => ctx.progress.entry(t, r.db));
      for (const [i, stream] of ins.entries()) stream.once('error', () => (failedOn ??= into[i]!.db));
      const countRows = format === 'binary' ? binaryRowCounter() : textRowCounter();
      try {
        await fanOut(
          out,
          ins,
          (chunk) => {
            const rows = countRows(chunk);
            for (const e of entries) {
              e.bytes += chunk.length;
              e.rows += rows;
            }
          },
          ctx.signal,
        );
      } catch (err) {
        s.broken = err as Error;
        discardConnection(s.client);
        for (const r of into) r.broken = err as Error;
        throw err;
      }
    }

    for (const r of active) {
      if (r.indexes.length > 0) {
        ctx.progress.set(t, r.db, { note: `rebuilding ${r.indexes.length} index${r.indexes.length === 1 ? '' : 'es'}` });
        await rebuildIndexes(r.client, tgt, r.indexes, ctx.logger.child({ target: r.db }));
      }
      await r.client.query('COMMIT');
      ctx.progress.set(t, r.db, { state: 'done', ended: new Date(), note: null });
    }
    for (const s of sources) await s.client.query('COMMIT');
    // Fresh statistics for the planner; outside the copy's transaction, so it cannot undo it.
    for (const r of active) {
      await r.client.query(`ANALYZE ${quoteTable(tgt)}`).catch((err: unknown) => {
        ctx.logger.warn({ table: label, target: r.db, err: errorMessage(err) }, 'clone: ANALYZE after the copy failed');
      });
    }
    return format;
  } catch (err) {
    for (const r of receivers) {
      if (ctx.progress.entry(t, r.db).state === 'running') {
        const stopped = ctx.signal.aborted && !(ctx.signal.reason instanceof CloneCancelled);
        const state = stopped ? 'queued' : ctx.signal.aborted ? 'cancelled' : 'failed';
        ctx.progress.set(t, r.db, { state, ended: stopped ? null : new Date(), note: stopped ? 'interrupted: the daemon stopped' : errorMessage(err) });
      }
    }
    // A source whose COPY TO stream was torn down takes no more queries: its
    // client never reads the rest of the COPY, so a ROLLBACK would wait for
    // ever (and its open transaction would block a TRUNCATE of the table).
    // Released broken below, its connection is closed, which ends the
    // transaction on the server.
    await Promise.all([...receivers, ...sources.filter((s) => !s.broken)].map(rollback));
    if (err instanceof CapraError || isConnectionError(err) || ctx.signal.aborted) throw err;
    throw new CapraError(`table ${label}${failedOn ? ` on ${failedOn}` : ''}: ${errorMessage(err)}`, { cause: err, table: label });
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    for (const s of [...receivers, ...sources]) s.client.release(s.broken);
  }
}

async function cancelBackend(conns: Connections, s: Side): Promise<void> {
  const pid = (s.client as unknown as { processID?: number }).processID;
  if (pid) await conns.with(s.db, (c) => c.query('SELECT pg_cancel_backend($1)', [pid]));
}

async function rollback(s: Side): Promise<void> {
  try {
    await s.client.query('ROLLBACK');
  } catch (err) {
    s.broken ??= err as Error;
  }
}

/**
 * TRUNCATE, or DELETE when other tables' foreign keys refer to this one
 * (TRUNCATE refuses then; DELETE under session_replication_role = replica
 * does not check them). True when a plain table was truncated: a COPY in the
 * same transaction may then write its rows frozen (COPY FREEZE, which a
 * partitioned table refuses), which spares the table's first readers,
 * ANALYZE and VACUUM the work of setting hint bits.
 */
async function emptyTable(r: Receiver, t: TableName): Promise<boolean> {
  await r.client.query('SAVEPOINT capra_empty');
  try {
    await r.client.query(`TRUNCATE ${onlyUnlessPartitioned(r.partitioned)}${quoteTable(t)}`);
    await r.client.query('RELEASE SAVEPOINT capra_empty');
    return !r.partitioned;
  } catch (err) {
    // "cannot truncate a table referenced in a foreign key constraint": delete instead.
    if (sqlState(err) !== SQLSTATE.featureNotSupported) throw err;
    await r.client.query('ROLLBACK TO SAVEPOINT capra_empty');
    await r.client.query(`DELETE FROM ${onlyUnlessPartitioned(r.partitioned)}${quoteTable(t)}`);
    return false;
  }
}
