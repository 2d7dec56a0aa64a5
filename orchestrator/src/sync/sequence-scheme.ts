import { type SeqState, nextOf } from './sequence-state.js';

/** The per-node offsets a multi-master sync's sources need, checked; each gap a warning with the advice that closes it. */

const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
const abs = (a: bigint): bigint => (a < 0n ? -a : a);

/** "a", "a and b", "a, b and c". */
export function listNodes(nodes: readonly string[]): string {
  return nodes.length <= 1 ? (nodes[0] ?? '') : `${nodes.slice(0, -1).join(', ')} and ${nodes[nodes.length - 1]}`;
}

/** The advice for per-node offsets: INCREMENT BY n, START 1..n (negative: -1..-n). */
function offsetAdvice(sources: readonly string[], negative: boolean): string {
  const n = sources.length;
  const starts = sources.map((node, i) => `START ${negative ? -(i + 1) : i + 1} on ${node}`);
  return `use INCREMENT BY ${negative ? -n : n} with ${listNodes(starts)}`;
}

/**
 * The multi-master scheme for one sequence: the same INCREMENT BY on every
 * source, at least as large as the number of sources, and each source on its
 * own residue modulo the increment, both where it starts and where it now is
 * (ALTER SEQUENCE … START without RESTART leaves the current value as it was).
 */
export function checkScheme(sync: string, label: string, states: Map<string, SeqState>, sources: readonly string[]): string[] {
  const first = states.get(sources[0]!)!;
  const incs = sources.map((n) => states.get(n)!.increment);
  if (incs.some((i) => i !== first.increment)) {
    const each = sources.map((n, i) => `${incs[i]} on ${n}`).join(', ');
    return [`sync ${sync}: sequence ${label} has a different INCREMENT BY on each source (${each}): ${offsetAdvice(sources, first.increment < 0n)}`];
  }
  const inc = first.increment;
  const m = abs(inc);
  if (m < BigInt(sources.length)) {
    const on = sources.length === 2 ? 'both' : `all ${sources.length}`;
    return [
      `sync ${sync}: sequence ${label} on ${listNodes(sources)} hands out the same values (increment ${inc} on ${on}): ${offsetAdvice(sources, inc < 0n)}`,
    ];
  }
  const warnings: string[] = [];
  const startRes = new Map<string, bigint>(sources.map((n) => [n, mod(states.get(n)!.start, m)]));
  const clashes = new Set<string>();
  for (let i = 0; i < sources.length; i++) {
    for (let j = i + 1; j < sources.length; j++) {
      const [a, b] = [sources[i]!, sources[j]!];
      if (startRes.get(a) !== startRes.get(b)) continue;
      clashes.add(a).add(b);
      warnings.push(
        `sync ${sync}: sequence ${label} on ${a} and ${b} hands out the same values (START ${states.get(a)!.start} and START ${states.get(b)!.start} with INCREMENT BY ${inc}): ${offsetAdvice(sources, inc < 0n)}`,
      );
    }
  }
  if (clashes.size > 0) return warnings;
  // Where each source is now decides its next values: last + k * increment.
  const furthest = sources.reduce(
    (best, n) => {
      const next = nextOf(states.get(n)!, inc);
      // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max throws on them)
      return inc > 0n ? (next > best ? next : best) : next < best ? next : best;
    },
    nextOf(first, inc),
  );
  for (const a of sources) {
    const st = states.get(a)!;
    if (st.last === null) continue;
    const now = mod(st.last, m);
    const other = sources.find((b) => b !== a && startRes.get(b) === now);
    if (other === undefined) continue;
    // The first value past every source's next that is on a's own residue.
    const own = startRes.get(a)!;
    const restart = inc > 0n ? furthest + mod(own - furthest, m) : furthest - mod(furthest - own, m);
    warnings.push(
      `sync ${sync}: sequence ${label} on ${a} is at ${st.last}, in step with ${other}'s values (INCREMENT BY ${inc}, START ${states.get(other)!.start} on ${other}): run ALTER SEQUENCE ${label} RESTART WITH ${restart} on ${a}`,
    );
  }
  return warnings;
}
