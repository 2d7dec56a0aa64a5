import type { SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { checkScheme, listNodes } from './sequence-scheme.js';
import { type SequenceName, selectedSequences, sequenceLabel } from './sequence-selection.js';
import { type SeqState, advance, nextOf, readStates } from './sequence-state.js';

/**
 * The sequences a sync carries. Rows arrive on a target with the source's
 * keys; a target's own sequence must never hand out a key the source already
 * used, so one-way targets are kept at least as far as their source. Sources
 * of a multi-master sync are never set (that would undo per-node offsets):
 * their scheme is checked instead, and every gap becomes a warning.
 */

export { type SequenceName, resolveSequences, sequenceLabel } from './sequence-selection.js';

export interface SequenceReport {
  /** setval calls that moved a target's sequence forward. */
  set: number;
  /** One line each, naming the sync, the sequence and the nodes. */
  warnings: string[];
}

export interface SyncSequencesOptions {
  /** Set only these nodes (still only the sync's pure targets); default: every target of the sync. */
  targets?: readonly string[];
}

/**
 * Carries a sync's sequences once. One source: every target is moved up to
 * the source's value where it is behind. Several sources: pure targets get
 * the value of the source furthest ahead; the sources are left alone and
 * their scheme checked. A sequence missing or unreadable on a node is a
 * warning, not a failure; an unreachable node is a failure (thrown).
 */
export async function syncSequences(conns: Connections, sync: SyncConfig, logger: Logger, opts: SyncSequencesOptions = {}): Promise<SequenceReport> {
  const log = logger.child({ sync: sync.name });
  const warnings: string[] = [];
  const targets = sync.targets.filter((t) => !sync.sources.includes(t) && (opts.targets === undefined || opts.targets.includes(t)));
  const multi = sync.sources.length > 1;

  // What each source carries, and its state there.
  const states = new Map<string, Map<string, SeqState>>();
  const byLabel = new Map<string, SequenceName>();
  for (const source of sync.sources) {
    const st = await conns.with(source, async (c) => {
      const seqs = await selectedSequences(c, sync.tables);
      for (const s of seqs) byLabel.set(sequenceLabel(s), s);
      return readStates(c, seqs);
    });
    states.set(source, st);
  }
  if (multi) {
    // A sequence one source carries must be on the others too.
    for (const source of sync.sources) {
      const have = states.get(source)!;
      const missing = [...byLabel.values()].filter((s) => !have.has(sequenceLabel(s)));
      if (missing.length === 0) continue;
      const more = await conns.with(source, (c) => readStates(c, missing));
      for (const [k, v] of more) have.set(k, v);
    }
  }

  let set = 0;
  const wanted: { seq: SequenceName; last: bigint; isCalled: boolean }[] = [];
  for (const [label, seq] of byLabel) {
    const present = sync.sources.filter((n) => states.get(n)!.has(label));
    const absent = sync.sources.filter((n) => !states.get(n)!.has(label));
    if (absent.length > 0) warnings.push(`sync ${sync.name}: sequence ${label} is missing on ${listNodes(absent)}: create it there`);
    const unreadable = present.filter((n) => states.get(n)!.get(label)!.last === null);
    if (unreadable.length > 0) {
      warnings.push(`sync ${sync.name}: cannot read sequence ${label} on ${listNodes(unreadable)}: grant SELECT on it to the sync's user`);
    }
    if (multi && absent.length === 0 && unreadable.length === 0) {
      warnings.push(...checkScheme(sync.name, label, new Map(sync.sources.map((n) => [n, states.get(n)!.get(label)!])), sync.sources));
    }
    // The value to carry: the source whose next value is furthest ahead.
    let best: { last: bigint; isCalled: boolean; next: bigint; inc: bigint } | null = null;
    for (const n of present) {
      const st = states.get(n)!.get(label)!;
      if (st.last === null) continue;
      const cand = { last: st.last, isCalled: st.isCalled, next: nextOf(st, st.increment), inc: st.increment };
      if (best === null || (cand.inc > 0n ? cand.next > best.next : cand.next < best.next)) best = cand;
    }
    if (best !== null) wanted.push({ seq, last: best.last, isCalled: best.isCalled });
  }

  for (const target of targets) {
    await conns.with(target, async (c) => {
      const there = await readStates(
        c,
        wanted.map((w) => w.seq),
      );
      for (const w of wanted) {
        const label = sequenceLabel(w.seq);
        const now = there.get(label);
        if (!now) {
          warnings.push(`sync ${sync.name}: sequence ${label} is missing on ${target}: create it there`);
          continue;
        }
        // Most runs find every target ahead already: skip the setval statement then.
        if (now.last !== null) {
          const sign = now.increment < 0n ? -1n : 1n;
          if (sign * nextOf(now, now.increment) >= sign * nextOf({ ...now, last: w.last, isCalled: w.isCalled }, now.increment)) continue;
        }
        try {
          if (await advance(c, w.seq, w.last, w.isCalled)) {
            set++;
            log.debug({ node: target, sequence: label, value: w.last.toString() }, 'sequence moved forward');
          }
        } catch (err) {
          // No privilege, or the value is past the target's MAXVALUE: the operator must act.
          warnings.push(`sync ${sync.name}: cannot set sequence ${label} on ${target} to ${w.last}: ${errorMessage(err)}`);
        }
      }
    });
  }
  return { set, warnings };
}
