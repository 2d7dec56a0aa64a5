/**
 * pg_snapshot values as positions in a delta log (the PgQ way). A batch is
 * every transaction visible in the new snapshot and not in the old one, so a
 * transaction that commits late is never skipped the way it would be behind
 * an "id > last id" high-water mark.
 *
 * To bound a batch without splitting a transaction, `boundedSnapshot` makes a
 * snapshot between two real ones: it sees everything the old one saw, plus
 * the transactions below an xid bound that the new one sees. Visibility
 * then stays monotonic: old ⊆ bounded ⊆ new.
 */
export interface Snap {
  xmin: bigint;
  xmax: bigint;
  /** In-progress xids, ascending, each in [xmin, xmax). */
  xip: bigint[];
}

export function parseSnapshot(text: string): Snap {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!m) throw new Error(`not a pg_snapshot: ${JSON.stringify(text)}`);
  const xip = m[3] ? m[3].split(',').map((x) => BigInt(x)) : [];
  xip.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { xmin: BigInt(m[1]!), xmax: BigInt(m[2]!), xip };
}

export function formatSnapshot(s: Snap): string {
  return `${s.xmin}:${s.xmax}:${s.xip.join(',')}`;
}

export function isVisible(s: Snap, xid: bigint): boolean {
  if (xid < s.xmin) return true;
  if (xid >= s.xmax) return false;
  return !s.xip.includes(xid);
}

/**
 * The snapshot that sees what `old` sees plus every xid below `bound` that
 * `cur` sees. `cur` must be later than `old` (it sees all `old` sees).
 */
export function boundedSnapshot(old: Snap, cur: Snap, bound: bigint): Snap {
  if (bound >= cur.xmax) return cur;
  const xmax = old.xmax > bound ? old.xmax : bound;
  const curXip = new Set(cur.xip);
  const invisible: bigint[] = [];
  // Not seen by old below its xmax: stays unseen unless cur sees it and it is below the bound.
  for (const x of old.xip) if (x >= bound || curXip.has(x)) invisible.push(x);
  // Between old.xmax and the bound: unseen only if cur does not see it either.
  for (const x of cur.xip) if (x >= old.xmax && x < bound) invisible.push(x);
  invisible.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { xmin: invisible[0] ?? xmax, xmax, xip: invisible };
}

/**
 * Whether `a` is later than `b`, for two positions taken from one server's
 * history (each sees at least what an earlier one saw): a larger xmax, or
 * the same xmax with fewer transactions still in progress.
 */
export function isLater(a: Snap, b: Snap): boolean {
  return a.xmax > b.xmax || (a.xmax === b.xmax && a.xip.length < b.xip.length);
}

/**
 * Picks the end of a batch from `old`: all of `cur`, or a bounded snapshot
 * that stops at a transaction boundary. `cut.past` is the txid of the change
 * just past the batch's limit (null: no more changes than the limit), in
 * txid order from `cut.first`.
 */
export function batchEnd(old: Snap, cur: Snap, cut: { first: bigint | null; past: bigint | null }): { end: Snap; more: boolean } {
  if (cut.first === null || cut.past === null) return { end: cur, more: false };
  // Never split a transaction: stop before the one that crosses the limit, or take the first whole.
  const bound = cut.past > cut.first ? cut.past : cut.past + 1n;
  const end = boundedSnapshot(old, cur, bound);
  return { end, more: formatSnapshot(end) !== formatSnapshot(cur) };
}
