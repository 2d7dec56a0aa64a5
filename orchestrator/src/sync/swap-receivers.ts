import type pg from 'pg';
import type { SyncConfig } from '../config/types.js';
import { SQLSTATE, applyError, sqlState } from '../db/errors.js';
import { eachAtOnce } from '../util/each-at-once.js';
import { quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { type ApplierRole, markApplier } from './applier-session.js';
import { type Receiver, applyKeysTo, applyTruncate, keyDefs, keyMatch } from './apply.js';
import { type Outcome, realFailure } from './copy-rows.js';
import { type LaneRef, confirmPosition, inLockOrder, lockSyncPositions, storePosition } from './delta-log.js';
import { isLater, parseSnapshot } from './snapshot.js';
import type { Changes, SourceRun } from './swap-sources.js';
import type { ExplicitRow, Settlement } from './swap-settle.js';
import { type TableMeta, matchOnTarget } from './table-meta.js';

/**
 * Multi-master, step three: applying to the receivers (every node of the
 * run). Each node has one REPEATABLE READ transaction for the whole run, so
 * it is read as a source and written as a receiver in one snapshot; each
 * receiver stores every source's new position in its own transaction, and
 * the transactions commit at once (one that fails leaves that receiver
 * behind, to be caught up by the next run). Each source's batch of a table
 * goes to all its receivers at once (applyKeysTo), and the steps that each
 * node takes on its own connection (opening, commits) run on all nodes at
 * once; locking the positions goes node by node (see openNodes).
 */

export interface NodeRun {
  db: string;
  client: pg.ClientBase;
  /** source -> position stored on this node */
  applied: Map<string, string>;
  /** Its apply was rolled back this run (a user's concurrent write): its positions stay where they were. */
  behind?: boolean;
}

/**
 * Opens every node's transaction for the run (all nodes at once), marked as
 * the applier's, then locks its positions for the sync node by node, in the
 * order a compare and a clone lock them (inLockOrder).
 */
export async function openNodes(clients: Map<string, pg.ClientBase>, job: string, sync: SyncConfig, roles: Map<string, ApplierRole>): Promise<NodeRun[]> {
  const nodes: NodeRun[] = await eachAtOnce([...clients], async ([db, client]) => {
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      let role = roles.get(db);
      if (!role) roles.set(db, (role = {}));
      await markApplier(client, job, sync.cascade, role);
      return { db, client, applied: new Map<string, string>() };
    } catch (err) {
      throw applyError(db, err);
    }
  });
  for (const n of inLockOrder(nodes, (x) => x.db)) {
    try {
      n.applied = await lockSyncPositions(n.client, job, sync.name);
    } catch (err) {
      throw applyError(n.db, err);
    }
  }
  return nodes;
}

/**
 * Keys a source does not send (lost conflicts), in a temp table on it that
 * its key query leaves out: "source\0table" -> temp table name. The table
 * is indexed on the key: where the batch's keys are looked up by the key
 * index, hash joins are off for the source's row fetch (see joinsFor in
 * apply.ts), and its NOT EXISTS against an unindexed table read the whole
 * table once per key: 50,000 keys with 5,000 withheld took 17.9 s on
 * PostgreSQL 18, and 52 ms with the index.
 */
export async function withholdKeys(sources: SourceRun[], withheld: Settlement['withheld']): Promise<Map<string, string>> {
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
        await s.client.query(`CREATE INDEX ON ${quoteIdent(name)} (${cols})`);
      } catch (err) {
        throw applyError(db, err, table);
      }
      exceptTables.set(`${db}\0${table}`, name);
    }
  }
  return exceptTables;
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

export interface Applied {
  /** Rows written, by "source>receiver" (the winner whose rows they are); merged rows count under "(merged)>receiver". */
  rows: Map<string, number>;
  /** Receivers left behind by a user's concurrent write. */
  behind: number;
}

/**
 * Applies the changed tables to every node, table by table, and each
 * source's keys of a table to all its receivers at once (applyKeysTo: the
 * source reads them once, the receivers write at the same time). A user's
 * write on a receiver, committed after the run's snapshot, to a key the run
 * overwrites there fails that receiver's apply (serialization failure): it
 * is rolled back to before its apply and left behind (its positions stay),
 * the others go on; the next run starts from its positions.
 *
 * The order of the receivers' writes does not matter: a node writes as a
 * receiver only keys that it does not send as a source (a key in two
 * sources' batches is sent by its winner alone), so what it sends is the
 * same before and after.
 */
export async function applyToNodes(
  nodes: NodeRun[],
  sources: SourceRun[],
  changes: Changes,
  settled: Settlement,
  exceptTables: Map<string, string>,
): Promise<Applied> {
  let temp = 0;
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
  const anyMeta = (table: string): TableMeta => sources.find((s) => s.metas.has(table))!.metas.get(table)!.meta;
  /** Rows written to each receiver, by the source whose rows they are. */
  const mine = new Map<NodeRun, Map<string, number>>(nodes.map((r) => [r, new Map()]));
  const add = (r: NodeRun, from: string, rows: number): void => void mine.get(r)!.set(from, (mine.get(r)!.get(from) ?? 0) + rows);
  const live = (): NodeRun[] => nodes.filter((r) => !r.behind);
  /**
   * A receiver's error: a serialization failure leaves it behind. It comes
   * only from a DELETE, never from the middle of a COPY (after which the
   * source's connection could not be trusted), so rolling back to the
   * savepoint is safe. Any other error fails the run.
   */
  const failed = async (r: NodeRun, err: unknown, table: string): Promise<void> => {
    if (sqlState(err) !== SQLSTATE.serializationFailure) throw applyError(r.db, err, table, keyCollision(err, anyMeta(table)));
    await r.client.query('ROLLBACK TO SAVEPOINT capra_apply');
    r.behind = true;
    mine.get(r)!.clear();
  };
  /** Runs one receiver's part of a table, its error handled as `failed` says. */
  const each = async (r: NodeRun, table: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      await failed(r, err, table);
    }
  };
  for (const r of nodes) await r.client.query('SAVEPOINT capra_apply');
  for (const table of changes.keys()) {
    const truncator = settled.truncatedBy.get(table);
    if (truncator) {
      for (const r of live()) {
        if (truncator.db === r.db) continue;
        await each(r, table, async () => add(r, truncator.db, await applyTruncate(truncator.client, r.client, (await metasOn(r, truncator)).get(table)!)));
      }
      continue;
    }
    for (const s of sources) {
      const info = s.metas.get(table);
      if (!info?.hasKeys) continue;
      const to = live().filter((r) => r.db !== s.db);
      if (to.length === 0) continue;
      const receivers: Receiver[] = [];
      for (const r of to) {
        try {
          receivers.push({ client: r.client, t: (await metasOn(r, s)).get(table)! });
        } catch (err) {
          throw applyError(r.db, err, table);
        }
      }
      let outcomes: Outcome[];
      try {
        const except = exceptTables.get(`${s.db}\0${table}`);
        // Keys read before the conflicts were settled hold the withheld ones too: with some withheld, the keys are read again without them.
        outcomes = await applyKeysTo(s.client, receivers, {
          tempName: `capra_keys_${temp++}`,
          except,
          deltaRows: info.deltaRows,
          listed: except ? undefined : info.listed,
        });
      } catch (err) {
        // The source's side failed (its keys or rows): the run fails.
        throw applyError(s.db, err, table);
      }
      const broken = realFailure(outcomes);
      const o = outcomes[broken];
      // A failed COPY fails the run (the source's connection is gone); failed DELETEs leave their receivers behind.
      if (o && 'copyFailed' in o) throw applyError(to[broken]!.db, o.error, table, keyCollision(o.error, anyMeta(table)));
      for (const [i, r] of to.entries()) {
        const got = outcomes[i]!;
        if ('error' in got) await failed(r, got.error, table);
        else add(r, s.db, got.rows);
      }
    }
    const explicit = settled.explicit.get(table) ?? [];
    for (const r of live()) {
      const rows = explicit.filter((e) => e.except !== r.db);
      if (rows.length > 0) await each(r, table, async () => add(r, rows[0]!.except ?? '(merged)', await writeRows(r.client, anyMeta(table), rows)));
    }
  }
  const written = new Map<string, number>();
  for (const r of live()) for (const [from, rows] of mine.get(r)!) if (rows > 0) written.set(`${from}>${r.db}`, rows);
  return { rows: written, behind: nodes.filter((r) => r.behind).length };
}

/** Rows given as JSON (a handler's merge, or a winner's row read earlier): delete the keys, insert the rows that exist. */
async function writeRows(client: pg.ClientBase, meta: TableMeta, rows: ExplicitRow[]): Promise<number> {
  await client.query(`DELETE FROM ${quoteTable(meta)} t USING jsonb_to_recordset($1::jsonb) AS k(${keyDefs(meta)}) WHERE ${keyMatch(meta.keyCols, 't', 'k')}`, [
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

/**
 * Ends the run on every node: each receiver stores every other source's new
 * position (never moved back) in its transaction, the transactions commit,
 * and each source is told how far each receiver has got, so its delta log
 * can be purged.
 */
export async function finishRun(nodes: NodeRun[], sources: SourceRun[], job: string, sync: SyncConfig): Promise<void> {
  await eachAtOnce(nodes, async (n) => {
    if (n.behind) return;
    for (const s of sources) {
      if (s.db === n.db) continue;
      const have = n.applied.get(s.db);
      if (have !== undefined && !isLater(parseSnapshot(s.endText), parseSnapshot(have))) continue;
      try {
        await storePosition(n.client, { job, sync: sync.name, source: s.db, target: n.db }, s.endText);
      } catch (err) {
        throw applyError(n.db, err);
      }
      n.applied.set(s.db, s.endText);
    }
  });
  await commitAll(nodes);
  // Each source is told by its own connection, all sources at once.
  await eachAtOnce(sources, async (s) => {
    for (const n of nodes) {
      const pos = n.applied.get(s.db);
      if (n.db === s.db || pos === undefined) continue;
      const lane: LaneRef = { job, sync: sync.name, source: s.db, target: n.db };
      await confirmPosition(s.client, lane, pos);
    }
  });
}

/**
 * Commits every node's transaction, all at once: each holds its own data
 * and positions, so any of them may commit without the others (one whose
 * commit fails stays where it was, and the next run starts from there).
 */
export async function commitAll(nodes: NodeRun[]): Promise<void> {
  await eachAtOnce(nodes, async (n) => {
    try {
      await n.client.query('COMMIT');
    } catch (err) {
      throw applyError(n.db, err);
    }
  });
}
