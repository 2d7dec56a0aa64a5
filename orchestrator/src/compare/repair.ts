import type pg from 'pg';
import type { SyncConfig } from '../config/types.js';
import { Connections, inTransaction } from '../db/connections.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { type ApplierRole, markApplier } from '../sync/applier-session.js';
import { applyKeyList } from '../sync/apply.js';
import { ConflictResolver, type Version } from '../sync/conflict.js';
import { PIN_OUTPUT_FORMATS } from '../sync/delta-log.js';
import type { TableMeta } from '../sync/table-meta.js';
import type { Logger } from '../util/logger.js';
import { comparedNodes, compareSync, syncTables } from './compare.js';
import { type Key, keyId, keyObject } from './key-sql.js';
import { changedSince, versionsOn } from './repair-versions.js';
import type { TableResult } from './table-compare.js';

/**
 * `capra repair`: compare, then make every node agree on each differing key.
 * One-way, the source's row (or its absence) goes to the targets;
 * multi-master, the sync's conflict rule picks among the sources' versions
 * and each decision is logged in repl.conflict as `repaired`. Writes go
 * through the apply path (delete the keys, copy the winner's rows) in
 * transactions of at most BATCH keys, marked as the applier's so they are
 * not captured back; a key a node's users changed after the compare is left
 * to the sync, which settles it by its own run.
 */

const BATCH = 1_000;
const ATTEMPTS = 3;

export interface RepairAction {
  sync: string;
  table: string;
  key: Record<string, string>;
  /** The database written. */
  node: string;
  /** copy: `from`'s row, or its absence; merge: the handler's row; delete. */
  action: 'copy' | 'delete' | 'merge';
  from?: string;
  /** The conflict rule that decided (multi-master), `source` one-way. */
  rule: string;
  /** The handler's merged row (merge). */
  row?: Record<string, unknown>;
}

export interface RepairReport {
  results: TableResult[];
  actions: RepairAction[];
  /** Keys left to the sync: changed on the node after the compare. */
  skipped: number;
  /** Rows written. */
  rows: number;
  dryRun: boolean;
}

interface LoggedDecision {
  sync: string;
  table_name: string;
  key: Record<string, string>;
  versions: { db: string; changed_at: string; clock: string; row: unknown }[];
  strategy: string;
  winner: string | null;
  detail: Record<string, unknown>;
}

export async function repairSync(
  conns: Connections,
  job: string,
  sync: SyncConfig,
  opts: { tables?: string[]; dryRun: boolean },
  logger: Logger,
): Promise<RepairReport> {
  const results = await compareSync(conns, job, sync, { tables: opts.tables }, logger);
  const report: RepairReport = { results, actions: [], skipped: 0, rows: 0, dryRun: opts.dryRun };
  const todo = results.filter((r) => r.keys.length > 0);
  if (todo.length === 0) return report;
  const { nodes } = comparedNodes(sync);
  const tables = new Map((await syncTables(conns, job, sync, nodes, opts.tables)).map((m) => [tableLabel(m.get(sync.sources[0]!)!), m]));
  const logged: LoggedDecision[] = [];
  const resolver = new ConflictResolver(conns, sync);
  for (const label of [...new Set(todo.map((r) => r.table))]) {
    const metas = tables.get(label)!;
    const mine = todo.filter((r) => r.table === label);
    const t = metas.get(sync.sources[0]!)!;
    if (sync.sources.length === 1) {
      for (const r of mine)
        for (const k of r.keys)
          report.actions.push({ sync: sync.name, table: label, key: keyObject(t, k), node: r.node, action: 'copy', from: r.reference, rule: 'source' });
    } else {
      const keys = [...new Map(mine.flatMap((r) => r.keys).map((k) => [keyId(k), k])).values()];
      report.actions.push(...(await decide(conns, resolver, sync, label, metas, keys, logged)));
    }
  }
  if (opts.dryRun) return report;
  const roles = new Map<string, ApplierRole>();
  const snapshots = new Map(results.map((r) => [r.table, r.snapshots]));
  const groups = new Map<string, RepairAction[]>();
  for (const a of report.actions) {
    const g = JSON.stringify([a.table, a.node, a.action, a.from ?? null]);
    groups.set(g, [...(groups.get(g) ?? []), a]);
  }
  for (const actions of groups.values()) {
    const a = actions[0]!;
    const metas = tables.get(a.table)!;
    for (let i = 0; i < actions.length; i += BATCH) {
      const done = await repairBatch(conns, job, sync, metas.get(a.node)!, actions.slice(i, i + BATCH), roles, snapshots.get(a.table)?.[a.node]);
      report.rows += done.rows;
      report.skipped += done.skipped;
    }
  }
  if (logged.length > 0) {
    await conns.with(Connections.META, (c) =>
      c.query(
        `INSERT INTO repl.conflict (sync, table_name, key, versions, strategy, decision, winner, detail)
         SELECT sync, table_name, key, versions, strategy, 'repaired', winner, detail
           FROM jsonb_to_recordset($1::jsonb) AS r(sync text, table_name text, key jsonb, versions jsonb, strategy text, winner text, detail jsonb)`,
        [JSON.stringify(logged)],
      ),
    );
  }
  logger.info({ sync: sync.name, actions: report.actions.length, rows: report.rows, skipped: report.skipped }, 'repaired');
  return report;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Multi-master: the rule's decision for each key, as actions, and the decisions to log. */
async function decide(
  conns: Connections,
  resolver: ConflictResolver,
  sync: SyncConfig,
  table: string,
  metas: Map<string, TableMeta>,
  keys: Key[],
  logged: LoggedDecision[],
): Promise<RepairAction[]> {
  const nodes = [...metas.keys()];
  const versions = new Map<string, Map<string, Version>>();
  for (const db of nodes) {
    versions.set(
      db,
      await conns.with(db, (c) => inTransaction(c, () => versionsOn(c, db, metas.get(db)!, keys), 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')),
    );
  }
  const t = metas.get(sync.sources[0]!)!;
  const actions: RepairAction[] = [];
  for (const k of keys) {
    const id = keyId(k);
    const key = keyObject(t, k);
    const shown = [...sync.sources].sort().map((db) => versions.get(db)!.get(id)!);
    const { rule, decision } = await resolver.decide({ sync: sync.name, table, key, versions: shown });
    const rowOf = (db: string): unknown => versions.get(db)!.get(id)!.row;
    const base = { sync: sync.name, table, key, rule };
    if (decision.kind === 'winner') {
      for (const n of nodes)
        if (n !== decision.db && !same(rowOf(n), rowOf(decision.db))) actions.push({ ...base, node: n, action: 'copy', from: decision.db });
    } else if (decision.kind === 'deleted') {
      for (const n of nodes) if (rowOf(n) !== null) actions.push({ ...base, node: n, action: 'delete' });
    } else if (decision.kind === 'merged') {
      for (const n of nodes) if (!same(rowOf(n), decision.row)) actions.push({ ...base, node: n, action: 'merge', row: decision.row });
    }
    logged.push({
      sync: sync.name,
      table_name: table,
      key,
      versions: shown.map((v) => ({ db: v.db, changed_at: v.changedAt, clock: v.clock, row: v.row })),
      strategy: rule,
      winner: decision.kind === 'winner' ? decision.db : null,
      detail: { decision: decision.kind, ...(decision.kind === 'winner' ? (decision.detail ?? {}) : decision.kind === 'merged' ? { row: decision.row } : {}) },
    });
  }
  return actions;
}

/** One bounded transaction on the node: the actions' keys take the winner's state; retried on a serialization failure. */
async function repairBatch(
  conns: Connections,
  job: string,
  sync: SyncConfig,
  t: TableMeta,
  actions: RepairAction[],
  roles: Map<string, ApplierRole>,
  comparedAt: string | undefined,
): Promise<{ rows: number; skipped: number }> {
  const { node, from, action } = actions[0]!;
  if (!roles.has(node)) roles.set(node, {});
  for (let attempt = 1; ; attempt++) {
    const target = await conns.connect(node);
    const source = from ? await conns.connect(from) : null;
    let broken: Error | undefined;
    try {
      await target.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await source?.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
      await source?.query(`SELECT ${PIN_OUTPUT_FORMATS}`);
      await markApplier(target, job, sync.cascade, roles.get(node)!);
      const keys = actions.map((a) => t.keyCols.map((c) => a.key[c]!));
      const moved = sync.sources.includes(node) && comparedAt ? await changedSince(target, t, comparedAt, keys) : new Set<string>();
      const mine = actions.filter((_, i) => !moved.has(keyId(keys[i]!)));
      let rows = 0;
      if (action === 'merge') rows = await writeMerged(target, t, mine);
      else if (mine.length > 0)
        rows = await applyKeyList(
          action === 'copy' ? source : null,
          target,
          t,
          mine.map((a) => a.key),
        );
      await target.query('COMMIT');
      await source?.query('COMMIT');
      return { rows, skipped: actions.length - mine.length };
    } catch (err) {
      broken = err as Error;
      await target.query('ROLLBACK').catch(() => {});
      await source?.query('ROLLBACK').catch(() => {});
      if (sqlState(err) !== SQLSTATE.serializationFailure || attempt >= ATTEMPTS) throw err;
    } finally {
      target.release(broken);
      source?.release(broken);
    }
  }
}

/** A handler's merged rows: each key deleted, then its row inserted from JSON. */
async function writeMerged(target: pg.ClientBase, t: TableMeta, actions: RepairAction[]): Promise<number> {
  await applyKeyList(
    null,
    target,
    t,
    actions.map((a) => a.key),
  );
  const cols = t.columns.map(quoteIdent).join(', ');
  const r = await target.query(`INSERT INTO ${quoteTable(t)} (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${quoteTable(t)}, $1::jsonb)`, [
    JSON.stringify(actions.map((a) => a.row)),
  ]);
  return r.rowCount ?? 0;
}
