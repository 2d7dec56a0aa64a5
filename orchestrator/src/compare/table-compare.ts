import { performance } from 'node:perf_hooks';
import { tableLabel } from '../db/ident.js';
import type { TableMeta } from '../sync/table-meta.js';
import { binBounds, binRange, scanBins, tableSize } from './bin-scan.js';
import { type Key, type RangeHash, keyId, keyObject, rowsOf } from './key-sql.js';
import { type KeyDiffs, narrow, noDiffs } from './narrow.js';
import { type SnapshotSet, inFlightKeys } from './snapshots.js';

/**
 * One table compared between a reference node and the others, in the views
 * of a SnapshotSet: bins of key ranges hashed by one sequential scan on every
 * node at once, differing bins narrowed to keys, keys in flight left out.
 * Each node reads each row once.
 */

export interface Difference {
  key: Record<string, string>;
  /** The row on the reference and on the node (null: absent); with versions only. */
  reference?: Record<string, unknown> | null;
  node?: Record<string, unknown> | null;
}

export interface TableResult {
  sync: string;
  /** schema.table */
  table: string;
  reference: string;
  node: string;
  /** Rows compared (the reference's). */
  rows: number;
  missing: Difference[];
  extra: Difference[];
  different: Difference[];
  /** Differing keys left out because a change to them was in flight. */
  inFlight: number;
  /** A TRUNCATE was in flight: the table was not compared. */
  truncateInFlight: boolean;
  seconds: number;
  /** The differing keys (missing, extra, different), for repair. */
  keys: Key[];
  /** Each node's snapshot the table was compared in, for repair. */
  snapshots: Record<string, string>;
}

export interface CompareTableOptions {
  sync: string;
  job: string;
  reference: string;
  nodes: string[];
  /** Per node: the table as it is there (the reference's key types). */
  metas: Map<string, TableMeta>;
  /** Fetch both versions of each differing row. */
  versions: boolean;
  /** Rows done so far of the estimate. */
  progress?: (rows: number) => void;
}

/** Versions fetched at most per table and node (--json); the keys are all listed. */
const MAX_VERSIONS = 10_000;

export async function compareTable(set: SnapshotSet, o: CompareTableOptions): Promise<TableResult[]> {
  const began = performance.now();
  const t = o.metas.get(o.reference)!;
  const others = o.nodes.filter((n) => n !== o.reference);
  const diffs = new Map(others.map((n) => [n, noDiffs()]));
  const rows = await binned(set, o, others, diffs);
  const anyDiff = [...diffs.values()].some((d) => d.missing.length + d.extra.length + d.different.length > 0);
  const flight = anyDiff ? await inFlightKeys(set, o.job, t, o.nodes) : { keys: new Set<string>(), truncated: false };
  const results: TableResult[] = [];
  for (const n of others) {
    results.push(await result(set, o, t, n, rows, flight.truncated ? noDiffs() : diffs.get(n)!, flight.keys, flight.truncated, began));
  }
  return results;
}

/**
 * Every node reads its table once, sequentially, into bins of key ranges
 * (bin-scan.ts), all at once; differing bins are narrowed. Returns the
 * reference's rows.
 */
async function binned(set: SnapshotSet, o: CompareTableOptions, others: string[], diffs: Map<string, KeyDiffs>): Promise<number> {
  const t = o.metas.get(o.reference)!;
  const ref = set.views.get(o.reference)!.client;
  const nodes = [o.reference, ...others];
  // Each node's size read once (in its snapshot, see scanBins); the reference's also sizes the bins.
  const sizes = await Promise.all(nodes.map((n) => tableSize(set.views.get(n)!.client, o.metas.get(n)!)));
  const bounds = await binBounds(ref, t, sizes[0]!);
  let rows = 0;
  const [mine, ...theirs] = await Promise.all(
    nodes.map((n, i) =>
      scanBins(set.views.get(n)!.client, o.metas.get(n)!, sizes[i]!, bounds, (r) => {
        if (n !== o.reference) return;
        rows += r;
        o.progress?.(rows);
      }),
    ),
  );
  const empty: RangeHash = { rows: 0, hash: null };
  for (const [i, n] of others.entries()) {
    const node = set.views.get(n)!.client;
    const bins = theirs[i]!;
    for (const b of [...new Set([...mine!.keys(), ...bins.keys()])].sort((x, y) => x - y)) {
      const a = mine!.get(b) ?? empty;
      const h = bins.get(b) ?? empty;
      if (h.rows !== a.rows || h.hash !== a.hash) await narrow(ref, node, t, binRange(bounds, b), a, h, diffs.get(n)!);
    }
  }
  return rows;
}

async function result(
  set: SnapshotSet,
  o: CompareTableOptions,
  t: TableMeta,
  node: string,
  rows: number,
  d: KeyDiffs,
  inFlight: Set<string>,
  truncateInFlight: boolean,
  began: number,
): Promise<TableResult> {
  const settled = (keys: Key[]): Key[] => keys.filter((k) => !inFlight.has(keyId(k)));
  const kept = { missing: settled(d.missing), extra: settled(d.extra), different: settled(d.different) };
  const all = [...kept.missing, ...kept.extra, ...kept.different];
  const skipped = d.missing.length + d.extra.length + d.different.length - all.length;
  let refRows = new Map<string, Record<string, unknown>>();
  let nodeRows = new Map<string, Record<string, unknown>>();
  if (o.versions) {
    const some = all.slice(0, MAX_VERSIONS);
    [refRows, nodeRows] = await Promise.all([
      rowsOf(set.views.get(o.reference)!.client, t, some),
      rowsOf(set.views.get(node)!.client, o.metas.get(node)!, some),
    ]);
  }
  const shown = (k: Key): Difference => {
    const diff: Difference = { key: keyObject(t, k) };
    if (o.versions) {
      diff.reference = refRows.get(keyId(k)) ?? null;
      diff.node = nodeRows.get(keyId(k)) ?? null;
    }
    return diff;
  };
  return {
    sync: o.sync,
    table: tableLabel(t),
    reference: o.reference,
    node,
    rows,
    missing: kept.missing.map(shown),
    extra: kept.extra.map(shown),
    different: kept.different.map(shown),
    inFlight: skipped,
    truncateInFlight,
    seconds: Math.round(performance.now() - began) / 1000,
    keys: all,
    snapshots: Object.fromEntries([...set.views].map(([db, v]) => [db, v.snapshot])),
  };
}
