import type { Difference, TableResult } from './table-compare.js';

/** How compare results are shown: one line per table and database, then the first keys of each kind. */

/** Keys listed per kind in the text output (--json lists them all). */
const SHOWN_KEYS = 10;

const keyText = (d: Difference): string => {
  const vals = Object.values(d.key);
  return vals.length === 1 ? vals[0]! : `(${vals.join(', ')})`;
};

function keys(kind: string, ds: Difference[]): string[] {
  if (ds.length === 0) return [];
  const more = ds.length > SHOWN_KEYS ? ` and ${ds.length - SHOWN_KEYS} more` : '';
  return [`    ${kind}: ${ds.slice(0, SHOWN_KEYS).map(keyText).join(', ')}${more}`];
}

export function formatCompare(results: TableResult[]): string[] {
  const lines: string[] = [];
  for (const r of results) {
    const counts = r.truncateInFlight
      ? 'not compared: a TRUNCATE is still in flight'
      : `${r.missing.length} missing on ${r.node}, ${r.extra.length} extra on ${r.node}, ${r.different.length} different`;
    const flight = r.inFlight > 0 ? ` (${r.inFlight} in flight, not counted)` : '';
    lines.push(`${r.sync}: ${r.table}: ${r.reference} -> ${r.node}: ${r.rows} rows compared, ${counts}${flight}, ${r.seconds.toFixed(2)} s`);
    lines.push(...keys(`missing on ${r.node}`, r.missing), ...keys(`extra on ${r.node}`, r.extra), ...keys('different', r.different));
  }
  const bad = results.filter((r) => r.missing.length + r.extra.length + r.different.length > 0).length;
  lines.push(bad === 0 ? `compare: all ${results.length} table comparison(s) agree` : `compare: ${bad} of ${results.length} table comparison(s) differ`);
  return lines;
}

/** The results for --json: everything but the raw keys (each difference has its key by column). */
export const compareJson = (results: TableResult[]): object[] => results.map(({ keys: _keys, snapshots: _snapshots, ...r }) => r);

/** A progress bar line for a terminal: table, percent of the planner's estimate, rows. */
export function progressLine(p: { sync: string; table: string; rows: number; estimate: number }, width = 30): string {
  const frac = p.estimate > 0 ? Math.min(1, p.rows / p.estimate) : 0;
  const filled = Math.round(frac * width);
  return `${p.sync}: ${p.table} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(frac * 100)}% ${p.rows} rows`;
}
