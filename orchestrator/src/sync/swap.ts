import type pg from 'pg';
import type { SyncConfig } from '../config/types.js';
import { syncNodes } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { CapraError, SQLSTATE, applyError, errorMessage, errorNode, isConnectionError, sqlState } from '../db/errors.js';
import { onlyUnlessPartitioned, quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { type ApplierRole, markApplier } from './applier-session.js';
import type { DownNodes } from './down-nodes.js';
import { BATCH_CONDITION, applyKeys, applyTruncate, keyDefs, startBatch } from './apply.js';
import { type Conflict, type ConflictResolver, type Decision, type Version } from './conflict.js';
import { batchEnd, registeredPosition } from './lane.js';
import { type Snap, formatSnapshot, isLater, parseSnapshot } from './snapshot.js';
import { type TableMeta, type TableRow, matchOnTarget, sourceTables } from './table-meta.js';

/**
 * One run of a multi-master (swap) sync: every node of the sync at once.
 *
 *  - Each node has one REPEATABLE READ transaction for the whole run: it is
 *    read as a source (its batch, its rows) and written as a receiver in that
 *    same snapshot, so a user's write to a key the run overwrites, committed
 *    after the snapshot, fails the run (serialization failure) and is picked
 *    up by the next one instead of being lost.
 *  - A source's batch starts at the oldest position any receiver has for it
 *    (a receiver whose commit failed last time is behind), so every receiver
 *    is given the same keys and the same decisions; applying a key is
 *    idempotent (the winner's current row, or its absence), so the receivers
 *    that are ahead lose nothing by getting it again.
 *  - A key in two or more sources' batches is a conflict, settled by the
 *    table's rule. The winner's row goes to every other node; without a
 *    conflict, the one source that changed a key is its winner.
 *  - Each receiver stores every source's new position in its own
 *    transaction; transactions commit one after another, and one that fails
 *    leaves that receiver behind, to be caught up by the next run.
 */

export interface SwapState {
  /** What each node allows the applier (see markApplier). */
  roles: Map<string, ApplierRole>;
  /** Per source, the relids whose initial copy (copy_data) to every receiver is done; undefined: no check. */
  seededRelids?: Map<string, Set<number>>;
  idleAdvancedAt?: number;
  /** Nodes left out of runs until they answer again (down, or hung). */
  down: DownNodes;
}

export interface SwapResult {
  /** Changed keys in the batch, all sources together (delta rows where keys were not listed: one source changed). */
  deltas: number;
  /** Rows written, by "source>receiver" (the winner whose rows they are); merged rows count under "(merged)>receiver". */
  rows: Map<string, number>;
  conflicts: LoggedConflict[];
  tables: string[];
  more: boolean;
  /** Nodes that could not be reached and were left out of the run, with the error. */
  down?: Map<string, string>;
  /** Receivers left behind by a user's concurrent write (see runWith): run again soon. */
  behind?: number;
  unseeded?: boolean;
}

export interface LoggedConflict extends Conflict {
  rule: string;
  decision: Decision;
}

const IDLE_ADVANCE_MS = 5_000;

interface Change {
  us: bigint;
  at: string;
  /** In the source's batch (false: changed after the batch's end, before the run's snapshot). */
  inBatch: boolean;
}

interface SourceRun {
  db: string;
  client: pg.ClientBase;
  cur: Snap;
  curText: string;
  oldText: string;
  endText: string;
  more: boolean;
  /** relid on this source -> key columns */
  keys: Map<number, string[]>;
  clock: 'commit' | 'change';
  /** Tables (by label) with changes in the batch (or, hasKeys false, only seen changed after it), as this source has them. */
  metas: Map<string, SourceTable>;
  truncated: Set<string>;
}

interface SourceTable {
  row: TableRow;
  /** The table read on this source itself: its key types and columns. */
  meta: TableMeta;
  /** The batch holds keys of it (not only a TRUNCATE). */
  hasKeys: boolean;
}

interface NodeRun {
  db: string;
  client: pg.ClientBase;
  /** source -> position stored on this node */
  applied: Map<string, string>;
  /** Its apply was rolled back this run (a user's concurrent write): its positions stay where they were. */
  behind?: boolean;
}


/**
 * Runs the sync over the nodes that can be reached. A node that is down, or
 * does not answer within the node timeout, is left out (and named in the
 * result) while at least one source and one other node are up: the others
 * keep replicating among themselves, and runs do not wait on it again until
 * it answers (state.down asks it in the background). Its positions stay
 * where they were, so when it is back the sources' batches start from there
 * again, and it gets, and gives, everything it missed. A node that stops
 * answering in the middle of a run rolls the whole run back (within the
 * timeout: the watchdog ends its connection), and the run is made again at
 * once without it.
 */
export async function runSwap(conns: Connections, job: string, sync: SyncConfig, batchRows: number, state: SwapState, resolver: ConflictResolver): Promise<SwapResult> {
  for (;;) {
    const clients = new Map<string, pg.PoolClient>();
    const down = new Map<string, string>();
    let failure: Error | undefined;
    try {
      const nodes = syncNodes(sync);
      const tried = nodes.filter((db) => !state.down.has(db));
      const connected = await Promise.allSettled(tried.map((db) => conns.connect(db)));
      let firstDown: unknown;
      for (const [i, r] of connected.entries()) {
        if (r.status === 'fulfilled') clients.set(tried[i]!, r.value);
        else if (isConnectionError(r.reason)) state.down.mark(tried[i]!, errorMessage(r.reason));
        else failure ??= r.reason as Error;
      }
      if (failure) throw failure;
      for (const db of nodes) {
        const error = state.down.error(db);
        if (error === undefined) continue;
        firstDown ??= new CapraError(error, { node: db });
        down.set(db, error);
      }
      if (clients.size < 2 || !sync.sources.some((s) => clients.has(s))) throw firstDown;
      const result = await runWith(clients, job, sync, batchRows, state, resolver);
      return down.size > 0 ? { ...result, down } : result;
    } catch (err) {
      failure = err as Error;
      await Promise.all([...clients.values()].map((c) => c.query('ROLLBACK').catch(() => {})));
      const node = errorNode(err);
      if (node === undefined || !clients.has(node) || !isConnectionError(err)) throw err;
      // A node went away or went silent during the run: the run was rolled back everywhere; again without it.
      state.down.mark(node, errorMessage(err));
    } finally {
      for (const c of clients.values()) c.release(failure);
    }
  }
}

/**
 * A duplicate of the replicated key itself: a user inserted the key on the
 * receiver after the run's snapshot (invisible to its DELETE). The next run
 * sees that insert as a change, so it is worth retrying at once.
 */
function keyCollision(err: unknown, meta: TableMeta): boolean {
  if (sqlState(err) !== SQLSTATE.uniqueViolation) return false;
  const m = /^Key \((.*)\)=\(/.exec(String((err as { detail?: unknown }).detail ?? ''));
  return m !== null && m[1]!.replaceAll('"', '') === meta.keyCols.join(', ');
}

async function runWith(
  clients: Map<string, pg.PoolClient>,
  job: string,
  sync: SyncConfig,
  batchRows: number,
  state: SwapState,
  resolver: ConflictResolver,
): Promise<SwapResult> {
  const nodes: NodeRun[] = [];
  for (const [db, client] of clients) {
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      let role = state.roles.get(db);
      if (!role) state.roles.set(db, (role = {}));
      await markApplier(client, job, sync.cascade, role);
      // Keys are compared as text across nodes: print them the same everywhere.
      const r = await client.query<{ source: string; position: string }>(
        `SELECT source, position::text AS position, set_config('TimeZone', 'UTC', true) FROM repl.applied WHERE job = $1 AND sync = $2 FOR UPDATE`,
        [job, sync.name],
      );
      nodes.push({ db, client, applied: new Map(r.rows.map((x) => [x.source, x.position])) });
    } catch (err) {
      throw applyError(db, err);
    }
  }

  // Each source's batch: from the oldest position any receiver has for it.
  const sources: SourceRun[] = [];
  for (const db of sync.sources) {
    const client = clients.get(db);
    if (!client) continue;
    try {
      sources.push(await openSource(client, db, job, sync, nodes, batchRows));
    } catch (err) {
      throw applyError(db, err);
    }
  }
  if (state.seededRelids && sources.some((s) => [...s.keys.keys()].some((relid) => !state.seededRelids!.get(s.db)?.has(relid)))) {
    await commitAll(nodes);
    return { deltas: 0, rows: new Map(), conflicts: [], tables: [], more: false, unseeded: true };
  }
  if (sources.every((s) => s.endText === s.oldText)) {
    // Nothing for us; move positions on now and then so the logs can be purged.
    if (Date.now() - (state.idleAdvancedAt ?? 0) > IDLE_ADVANCE_MS && sources.some((s) => nodes.some((n) => n.db !== s.db && n.applied.get(s.db) !== s.curText))) {
      for (const s of sources) s.endText = s.curText;
      await storePositions(nodes, sources, job, sync);
      await commitAll(nodes);
      await confirmAll(sources, nodes, job, sync);
      state.idleAdvancedAt = Date.now();
    } else {
      await commitAll(nodes);
    }
    return { deltas: 0, rows: new Map(), conflicts: [], tables: [], more: false };
  }

  // The changed keys, by table and key, with who changed them and when.
  const changes = new Map<string, Map<string, Map<string, Change>>>();
  let deltas = 0;
  // Keys are listed (into this process) only to find conflicts: with one source changed, there are none.
  const listKeys = sources.filter((s) => s.endText !== s.oldText).length > 1;
  for (const s of sources) {
    try {
      deltas += await readBatch(s, job, changes, listKeys);
    } catch (err) {
      throw applyError(s.db, err);
    }
  }
  for (const s of sources) {
    if (!s.more) continue;
    try {
      await readLater(s, job, changes);
    } catch (err) {
      throw applyError(s.db, err);
    }
  }

  // A TRUNCATE replaces the table everywhere with the contents of the (first listed) source that truncated it.
  const truncatedBy = new Map<string, SourceRun>();
  for (const s of sources) for (const t of s.truncated) if (!truncatedBy.has(t)) truncatedBy.set(t, s);

  // Conflicts: keys with more than one changer.
  const logged: LoggedConflict[] = [];
  /** source -> table -> keys (as text) it does not send */
  const withheld = new Map<string, Map<string, string[]>>();
  /** table -> rows to write on every node but `except` (row null: delete) */
  const explicit = new Map<string, { key: string; row: Record<string, unknown> | null; except: string | null }[]>();
  const withhold = (db: string, table: string, key: string): void => {
    let m = withheld.get(db);
    if (!m) withheld.set(db, (m = new Map()));
    let keys = m.get(table);
    if (!keys) m.set(table, (keys = []));
    keys.push(key);
  };
  const writeEverywhere = (table: string, row: { key: string; row: Record<string, unknown> | null; except: string | null }): void => {
    let rows = explicit.get(table);
    if (!rows) explicit.set(table, (rows = []));
    rows.push(row);
  };
  for (const [table, keys] of changes) {
    if (truncatedBy.has(table)) continue;
    const contested = [...keys].filter(([, by]) => by.size > 1 && [...by.values()].some((c) => c.inBatch));
    if (contested.length === 0) continue;
    const rows = await readVersions(sources, table, contested.map(([k]) => k));
    for (const [key, by] of contested) {
      const versions: Version[] = [...by.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([db, c]) => ({ db, changedUs: c.us, changedAt: c.at, clock: sources.find((s) => s.db === db)!.clock, row: rows.get(db)?.get(key) ?? null }));
      let decision: Decision;
      if (versions.every((v) => JSON.stringify(v.row) === JSON.stringify(versions[0]!.row))) {
        // The same row everywhere (the same change made twice, or a node that
        // was left out getting back what the others already settled): nothing to settle.
        decision = { kind: 'winner', db: versions.find((v) => by.get(v.db)!.inBatch)!.db };
      } else {
        const conflict: Conflict = { sync: sync.name, table, key: JSON.parse(key) as Record<string, unknown>, versions };
        const settled = await resolver.decide(conflict);
        decision = settled.decision;
        logged.push({ ...conflict, ...settled });
      }
      for (const [db, c] of by) {
        if (c.inBatch && !(decision.kind === 'winner' && decision.db === db)) withhold(db, table, key);
      }
      if (decision.kind === 'winner' && !by.get(decision.db)!.inBatch) {
        const winner = decision.db;
        writeEverywhere(table, { key, row: versions.find((v) => v.db === winner)!.row, except: winner });
      } else if (decision.kind === 'merged' || decision.kind === 'deleted') {
        writeEverywhere(table, { key, row: decision.kind === 'merged' ? decision.row : null, except: null });
      }
    }
  }

  // Keys a source does not send, in a temp table there that its key query leaves out.
  const exceptTables = new Map<string, string>();
  let n = 0;
  for (const [db, tables] of withheld) {
    const s = sources.find((x) => x.db === db)!;
    for (const [table, keys] of tables) {
      const meta = s.metas.get(table)!.meta;
      const name = `capra_withheld_${n++}`;
      const cols = meta.keyCols.map(quoteIdent).join(', ');
      try {
        await s.client.query(
          `CREATE TEMP TABLE ${quoteIdent(name)} ON COMMIT DROP AS SELECT ${cols} FROM jsonb_to_recordset($1::jsonb) AS r(${keyDefs(meta)})`,
          [`[${keys.join(',')}]`],
        );
      } catch (err) {
        throw applyError(db, err, table);
      }
      exceptTables.set(`${db}\0${table}`, name);
    }
  }

  // Apply, node by node.
  const written = new Map<string, number>();
  const count = (from: string, to: string, rows: number): void => {
    if (rows > 0) written.set(`${from}>${to}`, (written.get(`${from}>${to}`) ?? 0) + rows);
  };
  let temp = 0;
  // A user's write on a receiver, committed after the run's snapshot, to a key
  // the run overwrites there fails that receiver's apply (serialization
  // failure): it is rolled back to before its apply and left behind (its
  // positions stay), the others go on; the next run starts from its positions.
  let behind = 0;
  /** A source's tables as a receiver has them (its columns, in its order; the source's key types): one catalog query per pair. */
  const onReceivers = new Map<string, Promise<Map<string, TableMeta>>>();
  const metasOn = (r: NodeRun, src: SourceRun): Promise<Map<string, TableMeta>> => {
    let metas = onReceivers.get(`${r.db}\0${src.db}`);
    if (!metas) {
      const rows = new Map([...src.metas.values()].map((t) => [t.row.relid, t.row]));
      metas = matchOnTarget(r.client, rows, src.keys, r.db).then((ms) => new Map(ms.map((m) => [tableLabel(m), m])));
      onReceivers.set(`${r.db}\0${src.db}`, metas);
    }
    return metas;
  };
  for (const r of nodes) {
    await r.client.query('SAVEPOINT capra_apply');
    const mine = new Map<string, number>();
    const add = (from: string, rows: number): void => void mine.set(from, (mine.get(from) ?? 0) + rows);
    try {
      for (const table of changes.keys()) {
        const truncator = truncatedBy.get(table);
        try {
          if (truncator) {
            if (truncator.db !== r.db) add(truncator.db, await applyTruncate(truncator.client, r.client, (await metasOn(r, truncator)).get(table)!));
            continue;
          }
          for (const s of sources) {
            if (s.db === r.db || !s.metas.get(table)?.hasKeys) continue;
            const meta = (await metasOn(r, s)).get(table)!;
            add(s.db, await applyKeys(s.client, r.client, meta, `capra_keys_${temp++}`, exceptTables.get(`${s.db}\0${table}`)));
          }
          const rows = (explicit.get(table) ?? []).filter((e) => e.except !== r.db);
          if (rows.length > 0) add(rows[0]!.except ?? '(merged)', await writeRows(r.client, anyMeta(sources, table), rows));
        } catch (err) {
          throw applyError(r.db, err, table, keyCollision(err, anyMeta(sources, table)));
        }
      }
      for (const [from, rows] of mine) count(from, r.db, rows);
    } catch (err) {
      // Only a serialization failure: it comes from a DELETE, never from the middle of a COPY
      // (after which the source's connection could not be trusted), so rolling back to the savepoint is safe.
      if (sqlState((err as { cause?: unknown }).cause ?? err) !== SQLSTATE.serializationFailure) throw err;
      await r.client.query('ROLLBACK TO SAVEPOINT capra_apply');
      r.behind = true;
      behind++;
    }
  }
  await storePositions(nodes, sources, job, sync);
  await commitAll(nodes);
  await confirmAll(sources, nodes, job, sync);
  return { deltas, rows: written, conflicts: logged, tables: [...changes.keys()], more: behind > 0 || sources.some((s) => s.more), behind };

  function anyMeta(all: SourceRun[], table: string): TableMeta {
    return all.find((s) => s.metas.has(table))!.metas.get(table)!.meta;
  }
}

/** A source's snapshot, tracked tables, batch bounds, and the metadata of the tables its batch touches. */
async function openSource(client: pg.ClientBase, db: string, job: string, sync: SyncConfig, nodes: NodeRun[], batchRows: number): Promise<SourceRun> {
  const head = await client.query<{ s: string; tracked: { relid: number; key_cols: string[] }[]; commit_ts: boolean }>(
    `SELECT pg_current_snapshot()::text AS s, current_setting('track_commit_timestamp')::boolean AS commit_ts,
            coalesce((SELECT json_agg(json_build_object('relid', relid::int, 'key_cols', key_cols))
                        FROM repl.consumer_table WHERE job = $1 AND sync = $2), '[]') AS tracked`,
    [job, sync.name],
  );
  const curText = head.rows[0]!.s;
  const keys = new Map(head.rows[0]!.tracked.map((r) => [r.relid, r.key_cols]));
  let oldest: string | null = null;
  for (const n of nodes) {
    if (n.db === db) continue;
    const pos = n.applied.get(db) ?? (await registeredPosition(client, job, sync.name, n.db));
    if (!pos) throw new CapraError(`sync ${sync.name}: ${db} has no consumer registered for ${n.db}: run capra add-triggers`);
    if (oldest === null || isLater(parseSnapshot(oldest), parseSnapshot(pos))) oldest = pos;
  }
  const oldText = oldest!;
  const txids = await client.query<{ txid: string }>(
    `SELECT d.txid::text AS txid FROM repl.delta d
      WHERE d.txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(d.txid, $1::pg_snapshot)
        AND pg_visible_in_snapshot(d.txid, $2::pg_snapshot)
        AND d.relid = ANY ($3::oid[]) AND d.origin IS DISTINCT FROM $4
      ORDER BY d.txid LIMIT $5`,
    [oldText, curText, [...keys.keys()], job, batchRows + 1],
  );
  const cur = parseSnapshot(curText);
  const run: SourceRun = {
    db,
    client,
    cur,
    curText,
    oldText,
    endText: oldText,
    more: false,
    keys,
    clock: head.rows[0]!.commit_ts ? 'commit' : 'change',
    metas: new Map(),
    truncated: new Set(),
  };
  if (txids.rows.length > 0) {
    const { end, more } = batchEnd(parseSnapshot(oldText), cur, txids.rows.map((r) => BigInt(r.txid)), batchRows);
    run.endText = formatSnapshot(end);
    run.more = more;
  }
  return run;
}

/** When a change happened: its commit time where the server keeps them, else the clock at the write. */
const changedAtSql = (s: SourceRun): string => (s.clock === 'commit' ? `coalesce(pg_xact_commit_timestamp(d.txid::xid), d.at)` : 'd.at');

/** The source's batch, key by key, into `changes`; returns the number of keys. */
async function readBatch(
  s: SourceRun,
  job: string,
  changes: Map<string, Map<string, Map<string, Change>>>,
  listKeys: boolean,
): Promise<number> {
  if (s.endText === s.oldText) return 0;
  await startBatch(s.client, s.oldText, s.endText, job);
  const per = await s.client.query<{ relid: number; truncated: boolean; keyed: boolean; n: string }>(
    `SELECT d.relid::int AS relid, bool_or(d.op = 'T') AS truncated, bool_or(d.op <> 'T') AS keyed, count(*) AS n FROM repl.delta d
      WHERE ${BATCH_CONDITION} AND d.relid = ANY ($1::oid[]) GROUP BY d.relid`,
    [[...s.keys.keys()]],
  );
  const live = await sourceTables(s.client, per.rows.map((r) => r.relid));
  // A table dropped on the source since its deltas were written has nothing left to send.
  const metas = await matchOnTarget(s.client, live, s.keys, s.db);
  let n = 0;
  for (const meta of metas) {
    const info = per.rows.find((r) => r.relid === meta.relid)!;
    const table = tableLabel(meta);
    s.metas.set(table, { row: live.get(meta.relid)!, meta, hasKeys: info.keyed });
    if (info.truncated) s.truncated.add(table);
    if (!info.keyed || !listKeys) {
      if (!changes.has(table)) changes.set(table, new Map());
      n += Number(info.n);
      continue;
    }
    const keys = await s.client.query<KeyChange>(changedKeysSql(s, meta, '', BATCH_CONDITION));
    note(changes, table, s.db, keys.rows, true);
    n += keys.rows.length;
  }
  return n;
}

/** Each changed key of one table, with when it last changed, among the deltas `where` selects (after `join`). */
function changedKeysSql(s: SourceRun, meta: TableMeta, join: string, where: string): string {
  const at = changedAtSql(s);
  return `SELECT to_jsonb(r)::text AS pk, (extract(epoch FROM max(${at})) * 1000000)::bigint::text AS us, max(${at})::text AS at
            FROM repl.delta d CROSS JOIN LATERAL jsonb_to_record(d.pk) AS r(${keyDefs(meta)})${join}
           WHERE ${where} AND d.relid = ${Number(meta.relid)} AND d.op <> 'T'
           GROUP BY 1`;
}

interface KeyChange {
  pk: string;
  us: string;
  at: string;
}

/**
 * For a source whose batch was cut short: which keys of the other sources'
 * batches it changed after the cut, so they are seen as conflicts now rather
 * than overwritten by a version that is older than its own.
 */
async function readLater(s: SourceRun, job: string, changes: Map<string, Map<string, Map<string, Change>>>): Promise<void> {
  const tracked = await sourceTables(s.client, [...s.keys.keys()]);
  const wanted = [...tracked.values()].filter((t) => (changes.get(tableLabel(t))?.size ?? 0) > 0);
  // Tables outside this source's batch: their metadata here, for the query and for reading versions.
  const absent = wanted.filter((t) => !s.metas.has(tableLabel(t)));
  const absentMetas = absent.length > 0 ? await matchOnTarget(s.client, new Map(absent.map((t) => [t.relid, t])), s.keys, s.db) : [];
  for (const meta of absentMetas) {
    s.metas.set(tableLabel(meta), { row: tracked.get(meta.relid)!, meta, hasKeys: false });
  }
  for (const t of wanted) {
    const table = tableLabel(t);
    const r = await s.client.query<KeyChange>(
      changedKeysSql(
        s,
        s.metas.get(table)!.meta,
        ' JOIN unnest($4::text[]) AS k(pk) ON k.pk = to_jsonb(r)::text',
        `d.txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(d.txid, $1::pg_snapshot)
           AND pg_visible_in_snapshot(d.txid, $2::pg_snapshot) AND d.origin IS DISTINCT FROM $3`,
      ),
      [s.endText, s.curText, job, [...changes.get(table)!.keys()]],
    );
    note(changes, table, s.db, r.rows, false);
  }
}

function note(changes: Map<string, Map<string, Map<string, Change>>>, table: string, db: string, rows: KeyChange[], inBatch: boolean): void {
  let keys = changes.get(table);
  if (!keys) changes.set(table, (keys = new Map()));
  for (const row of rows) {
    let by = keys.get(row.pk);
    if (!by) {
      if (!inBatch) continue;
      keys.set(row.pk, (by = new Map()));
    }
    if (!by.has(db)) by.set(db, { us: BigInt(row.us), at: row.at, inBatch });
  }
}

/** Every source's current row for each contested key (none where deleted): source -> key -> row. */
async function readVersions(sources: SourceRun[], table: string, keys: string[]): Promise<Map<string, Map<string, Record<string, unknown>>>> {
  const out = new Map<string, Map<string, Record<string, unknown>>>();
  for (const s of sources) {
    const meta = s.metas.get(table)?.meta;
    if (!meta) continue;
    const match = meta.keyCols.map((k) => `t.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' AND ');
    try {
      const r = await s.client.query<{ pk: string; row: Record<string, unknown> }>(
        `SELECT to_jsonb(k)::text AS pk, to_jsonb(t) AS row
           FROM jsonb_to_recordset($1::jsonb) AS k(${keyDefs(meta)})
           JOIN ${onlyUnlessPartitioned(meta.partitioned)}${quoteTable(meta)} t ON ${match}`,
        [`[${keys.join(',')}]`],
      );
      out.set(s.db, new Map(r.rows.map((x) => [x.pk, x.row])));
    } catch (err) {
      throw applyError(s.db, err, table);
    }
  }
  return out;
}

/** Rows given as JSON (a handler's merge, or a winner's row read earlier): delete the keys, insert the rows that exist. */
async function writeRows(client: pg.ClientBase, meta: TableMeta, rows: { key: string; row: Record<string, unknown> | null }[]): Promise<number> {
  const match = meta.keyCols.map((k) => `t.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' AND ');
  await client.query(`DELETE FROM ${quoteTable(meta)} t USING jsonb_to_recordset($1::jsonb) AS k(${keyDefs(meta)}) WHERE ${match}`, [
    `[${rows.map((r) => r.key).join(',')}]`,
  ]);
  const present = rows.filter((r) => r.row !== null).map((r) => r.row);
  if (present.length === 0) return 0;
  const cols = meta.columns.map(quoteIdent).join(', ');
  const res = await client.query(
    `INSERT INTO ${quoteTable(meta)} (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${quoteTable(meta)}, $1::jsonb)`,
    [JSON.stringify(present)],
  );
  return res.rowCount ?? 0;
}

/** Each receiver's new position for every other source (never moved back). */
async function storePositions(nodes: NodeRun[], sources: SourceRun[], job: string, sync: SyncConfig): Promise<void> {
  for (const n of nodes) {
    if (n.behind) continue;
    for (const s of sources) {
      if (s.db === n.db) continue;
      const have = n.applied.get(s.db);
      if (have !== undefined && !isLater(parseSnapshot(s.endText), parseSnapshot(have))) continue;
      try {
        await n.client.query(
          `INSERT INTO repl.applied (job, sync, source, position) VALUES ($1, $2, $3, $4::pg_snapshot)
           ON CONFLICT (job, sync, source) DO UPDATE SET position = EXCLUDED.position, applied_at = now()`,
          [job, sync.name, s.db, s.endText],
        );
      } catch (err) {
        throw applyError(n.db, err);
      }
      n.applied.set(s.db, s.endText);
    }
  }
}

async function commitAll(nodes: NodeRun[]): Promise<void> {
  for (const n of nodes) {
    try {
      await n.client.query('COMMIT');
    } catch (err) {
      throw applyError(n.db, err);
    }
  }
}

/** Tells each source how far each receiver has got, so its delta log can be purged. */
async function confirmAll(sources: SourceRun[], nodes: NodeRun[], job: string, sync: SyncConfig): Promise<void> {
  for (const s of sources) {
    for (const n of nodes) {
      const pos = n.applied.get(s.db);
      if (n.db === s.db || pos === undefined) continue;
      await s.client.query('UPDATE repl.consumer SET position = $4::pg_snapshot, updated_at = now() WHERE job = $1 AND sync = $2 AND target = $3', [
        job,
        sync.name,
        n.db,
        pos,
      ]);
    }
  }
}
