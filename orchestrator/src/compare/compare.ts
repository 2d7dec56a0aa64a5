import type { SyncConfig } from '../config/types.js';
import { syncNodes } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { tableLabel } from '../db/ident.js';
import { parseTableName } from '../db/table-ref.js';
import { type TableMeta, matchOnTarget, sourceTables } from '../sync/table-meta.js';
import { CapraError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { estimatedRows } from './key-sql.js';
import { openSnapshots } from './snapshots.js';
import { type TableResult, compareTable } from './table-compare.js';

/**
 * `capra compare` for one sync: which nodes, which tables, and each table
 * compared in its own set of consistent views (snapshots.ts), so that no
 * snapshot stays open longer than one table takes. The reference is the
 * sync's first source among the nodes compared: one-way, every target is
 * compared with the source; multi-master, every node with the first source.
 */

export interface CompareOptions {
  /** table or schema.table; all the sync's tables when empty. */
  tables?: string[];
  /** The nodes to compare; all the sync's when empty. */
  nodes?: string[];
  /** Fetch both versions of each differing row (--json, repair). */
  versions?: boolean;
  progress?: (p: CompareProgress) => void;
}

export interface CompareProgress {
  sync: string;
  table: string;
  rows: number;
  /** The planner's estimate of the table's rows (0: unknown). */
  estimate: number;
}

/** The nodes compared and the reference among them. */
export function comparedNodes(sync: SyncConfig, wanted: string[] = []): { reference: string; nodes: string[] } {
  const all = syncNodes(sync);
  for (const n of wanted) {
    if (!all.includes(n)) throw new CapraError(`sync ${sync.name} has no database ${n} (its databases: ${all.join(', ')})`);
  }
  const nodes = wanted.length > 0 ? all.filter((n) => wanted.includes(n)) : all;
  if (nodes.length < 2) throw new CapraError(`sync ${sync.name}: compare needs two databases or more, got ${nodes.join(', ')}`);
  return { reference: sync.sources.find((s) => nodes.includes(s)) ?? nodes[0]!, nodes };
}

/** The sync's tables as each node has them (node -> meta), in the first source's registration, filtered by `only`. */
export async function syncTables(conns: Connections, job: string, sync: SyncConfig, nodes: string[], only: string[] = []): Promise<Map<string, TableMeta>[]> {
  const origin = sync.sources[0]!;
  const { rows: tracked, keys } = await conns.with(origin, async (c) => {
    const r = await c.query<{ relid: number; key_cols: string[] }>(
      'SELECT relid::int AS relid, key_cols FROM repl.consumer_table WHERE job = $1 AND sync = $2',
      [job, sync.name],
    );
    return { rows: await sourceTables(c, [...new Set(r.rows.map((x) => x.relid))]), keys: new Map(r.rows.map((x) => [x.relid, x.key_cols])) };
  });
  const wanted = only.map((t) => tableLabel(parseTableName(t)));
  const chosen = new Map([...tracked].filter(([, t]) => wanted.length === 0 || wanted.includes(tableLabel(t))));
  for (const w of wanted) {
    if (![...chosen.values()].some((t) => tableLabel(t) === w))
      throw new CapraError(`sync ${sync.name} does not replicate table ${w} (run capra add-triggers?)`);
  }
  // A shaped table's target holds another name, columns or rows than its source: compared as is, it would differ everywhere.
  const shaped = new Set(Object.keys(sync.tables.options ?? {}).map((ref) => tableLabel(parseTableName(ref))));
  const refused = [...chosen.values()].map(tableLabel).filter((l) => shaped.has(l));
  if (refused.length > 0)
    throw new CapraError(`sync ${sync.name}: compare does not check tables with tables.options yet: ${refused.join(', ')} (name the others with --tables)`);
  const perTable = new Map<number, Map<string, TableMeta>>([...chosen.keys()].map((relid) => [relid, new Map()]));
  for (const node of nodes) {
    const metas = await conns.with(node, (c) => matchOnTarget(c, chosen, keys, node));
    for (const m of metas) perTable.get(m.relid)!.set(node, m);
  }
  return [...perTable.values()].sort((a, b) => {
    const x = tableLabel([...a.values()][0]!);
    const y = tableLabel([...b.values()][0]!);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** Compares every chosen table of the sync; one result per table and node other than the reference. */
export async function compareSync(conns: Connections, job: string, sync: SyncConfig, opts: CompareOptions, logger: Logger): Promise<TableResult[]> {
  const { reference, nodes } = comparedNodes(sync, opts.nodes);
  const results: TableResult[] = [];
  for (const metas of await syncTables(conns, job, sync, nodes, opts.tables)) {
    const label = tableLabel(metas.get(reference)!);
    const estimate = opts.progress ? await conns.with(reference, (c) => estimatedRows(c, metas.get(reference)!)) : 0;
    const set = await openSnapshots(conns, job, sync, nodes);
    try {
      const rs = await compareTable(set, {
        sync: sync.name,
        job,
        reference,
        nodes,
        metas,
        versions: opts.versions === true,
        progress: (rows) => opts.progress?.({ sync: sync.name, table: label, rows, estimate }),
      });
      for (const r of rs) {
        logger.info(
          { sync: sync.name, table: label, node: r.node, rows: r.rows, missing: r.missing.length, extra: r.extra.length, different: r.different.length },
          'compared',
        );
      }
      results.push(...rs);
    } finally {
      await set.close();
    }
  }
  return results;
}

/** Rows that differ in a result (missing, extra, different). */
export const differing = (r: TableResult): number => r.missing.length + r.extra.length + r.different.length;
