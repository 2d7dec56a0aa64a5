import type pg from 'pg';
import type { SyncConfig, TableSelection } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../db/errors.js';
import { type TableName, quoteTable, tableLabel } from '../db/ident.js';
import { type TableRef, matches, parseSelector } from '../triggers/table-ref.js';
import type { Logger } from '../util/logger.js';

/**
 * The sequences a sync carries. Rows arrive on a target with the source's
 * keys; a target's own sequence must never hand out a key the source already
 * used, so one-way targets are kept at least as far as their source. Sources
 * of a multi-master sync are never set (that would undo per-node offsets):
 * their scheme is checked instead, and every gap becomes a warning.
 */

export interface SequenceName {
  schema: string;
  name: string;
}

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

const SYSTEM_SCHEMAS = ['pg_catalog', 'information_schema', 'pg_toast', 'repl'];

export const sequenceLabel = (s: SequenceName): string => tableLabel({ schema: s.schema, table: s.name });
const quoteSequence = (s: SequenceName): string => quoteTable({ schema: s.schema, table: s.name });

interface ListedSequence extends SequenceName {
  /** The table whose serial or identity column owns it. */
  owner: TableName | null;
}

async function listSequences(client: pg.ClientBase): Promise<ListedSequence[]> {
  const { rows } = await client.query<{ schema: string; name: string; owner_schema: string | null; owner_table: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, o.schema AS owner_schema, o.table AS owner_table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN LATERAL (
         SELECT tn.nspname AS schema, t.relname AS table
           FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
            AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
          LIMIT 1) o ON true
      WHERE c.relkind = 'S' AND c.relpersistence <> 't' AND n.nspname <> ALL ($1::text[])
      ORDER BY n.nspname, c.relname`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((r) => ({
    schema: r.schema,
    name: r.name,
    owner: r.owner_schema !== null && r.owner_table !== null ? { schema: r.owner_schema, table: r.owner_table } : null,
  }));
}

/** The rule resolveTables applies: included (or include empty) and not excluded. */
function tableSelected(include: TableRef[], exclude: TableRef[], t: TableName): boolean {
  return (include.length === 0 || include.some((r) => matches(r, t))) && !exclude.some((r) => matches(r, t));
}

function carried(listed: ListedSequence[], sel: TableSelection, ownerSelected: (t: TableName) => boolean): SequenceName[] {
  const include = sel.include.map(parseSelector);
  const exclude = sel.exclude.map(parseSelector);
  const out: SequenceName[] = [];
  for (const s of listed) {
    const asTable = { schema: s.schema, table: s.name };
    const wanted =
      include.length === 0 ||
      include.some((r) => matches(r, asTable)) || // a bare schema, or the sequence by name
      (s.owner !== null && ownerSelected(s.owner));
    // Excluding a table excludes the sequence of its serial/identity column too.
    const excluded = exclude.some((r) => matches(r, asTable) || (s.owner !== null && matches(r, s.owner)));
    if (wanted && !excluded) out.push({ schema: s.schema, name: s.name });
  }
  return out;
}

/**
 * The sequences a sync carries on one database: those in a schema the
 * selection includes (every non-system schema when include is empty), those
 * named as schema.sequence in include, and those owned by a serial or
 * identity column of one of `tables`; minus what tables.exclude matches,
 * directly or through the table that owns it.
 */
export async function resolveSequences(client: pg.ClientBase, sel: TableSelection, tables: readonly TableName[]): Promise<SequenceName[]> {
  const chosen = new Set(tables.map(tableLabel));
  return carried(await listSequences(client), sel, (t) => chosen.has(tableLabel(t)));
}

/** The same, judging owner tables by the selection itself (no key lookups: cheap enough to run every second). */
async function selectedSequences(client: pg.ClientBase, sel: TableSelection): Promise<SequenceName[]> {
  const include = sel.include.map(parseSelector);
  const exclude = sel.exclude.map(parseSelector);
  return carried(await listSequences(client), sel, (t) => tableSelected(include, exclude, t));
}

/** A sequence as one node has it. Values are bigint: kept as BigInt, passed as text. */
interface SeqState {
  start: bigint;
  increment: bigint;
  /** null: the node's user may not read it. */
  last: bigint | null;
  isCalled: boolean;
}

/** The next value a sequence hands out; only for a readable state. */
const nextOf = (s: SeqState, increment: bigint): bigint => (s.isCalled ? s.last! + increment : s.last!);
const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
const abs = (a: bigint): bigint => (a < 0n ? -a : a);

/**
 * The state of `seqs` on one node (missing ones absent from the map). The
 * value is read from the sequence itself where the user has SELECT (it tells
 * whether last_value was handed out yet); with USAGE only, from
 * pg_sequence_last_value, which is null until the first nextval.
 */
async function readStates(client: pg.ClientBase, seqs: SequenceName[]): Promise<Map<string, SeqState>> {
  const out = new Map<string, SeqState>();
  if (seqs.length === 0) return out;
  const { rows } = await client.query<{
    schema: string;
    name: string;
    start: string;
    increment: string;
    can_select: boolean;
    can_use: boolean;
    last: string | null;
  }>(
    `SELECT n.nspname AS schema, c.relname AS name, p.seqstart::text AS start, p.seqincrement::text AS increment,
            has_sequence_privilege(c.oid, 'SELECT') AS can_select, has_sequence_privilege(c.oid, 'USAGE') AS can_use,
            CASE WHEN has_sequence_privilege(c.oid, 'USAGE') THEN pg_sequence_last_value(c.oid)::text END AS last
       FROM unnest($1::text[], $2::text[]) w(schema, name)
       JOIN pg_namespace n ON n.nspname = w.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind = 'S'
       JOIN pg_sequence p ON p.seqrelid = c.oid`,
    [seqs.map((s) => s.schema), seqs.map((s) => s.name)],
  );
  const readable: SequenceName[] = [];
  for (const r of rows) {
    const canUse = r.can_select || r.can_use;
    out.set(sequenceLabel(r), {
      start: BigInt(r.start),
      increment: BigInt(r.increment),
      last: r.last === null ? (canUse ? BigInt(r.start) : null) : BigInt(r.last),
      isCalled: r.last !== null,
    });
    if (r.can_select) readable.push({ schema: r.schema, name: r.name });
  }
  if (readable.length > 0) {
    const union = readable.map((s, i) => `SELECT ${i}::int AS i, last_value::text AS last, is_called FROM ${quoteSequence(s)}`).join(' UNION ALL ');
    const values = await client.query<{ i: number; last: string; is_called: boolean }>(union);
    for (const v of values.rows) {
      const st = out.get(sequenceLabel(readable[v.i]!))!;
      st.last = BigInt(v.last);
      st.isCalled = v.is_called;
    }
  }
  return out;
}

/**
 * Moves a target's sequence to (last, isCalled) when that hands out later
 * values than it would now; never backwards. PostgreSQL has no
 * compare-and-set for sequences (LOCK refuses them, and nextval takes no lock
 * a non-owner could wait on), so the comparison and the setval are one
 * statement: only a nextval on the target in between those two steps of the
 * same statement could be overtaken, and a target's keys normally arrive by
 * replication. Returns whether it moved.
 */
async function advance(client: pg.ClientBase, s: SequenceName, last: bigint, isCalled: boolean): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT setval(w.seq, $2::bigint, $3::boolean)
       FROM (SELECT $1::regclass AS seq) w
       JOIN pg_sequence p ON p.seqrelid = w.seq,
            (SELECT last_value, is_called FROM ${quoteSequence(s)}) cur
      WHERE sign(p.seqincrement) * (CASE WHEN cur.is_called THEN cur.last_value::numeric + p.seqincrement ELSE cur.last_value END)
          < sign(p.seqincrement) * (CASE WHEN $3::boolean THEN $2::numeric + p.seqincrement ELSE $2::numeric END)`,
    [quoteSequence(s), last.toString(), isCalled],
  );
  return rows.length > 0;
}

/** "a", "a and b", "a, b and c". */
function listNodes(nodes: readonly string[]): string {
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
function checkScheme(sync: string, label: string, states: Map<string, SeqState>, sources: readonly string[]): string[] {
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
    return [`sync ${sync}: sequence ${label} on ${listNodes(sources)} hands out the same values (increment ${inc} on ${on}): ${offsetAdvice(sources, inc < 0n)}`];
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
  const furthest = sources.reduce((best, n) => {
    const next = nextOf(states.get(n)!, inc);
    return inc > 0n ? (next > best ? next : best) : next < best ? next : best;
  }, nextOf(first, inc));
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

/**
 * Carries a sync's sequences once. One source: every target is moved up to
 * the source's value where it is behind. Several sources: pure targets get
 * the value of the source furthest ahead; the sources are left alone and
 * their scheme checked. A sequence missing or unreadable on a node is a
 * warning, not a failure; an unreachable node is a failure (thrown).
 */
export async function syncSequences(
  conns: Connections,
  sync: SyncConfig,
  logger: Logger,
  opts: SyncSequencesOptions = {},
): Promise<SequenceReport> {
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
      const there = await readStates(c, wanted.map((w) => w.seq));
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

/**
 * Runs syncSequences at most once per interval, for callers that finish runs
 * often (a lane worker after each run). A call inside the interval schedules
 * one trailing run at its end, so the last change is carried without waiting
 * for the next run. Each distinct warning is logged once; a failure is
 * logged, never thrown: sequences must not stall the rows.
 */
export class SequenceKeeper {
  private lastRun = -Infinity;
  private running: Promise<SequenceReport | null> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly warned = new Set<string>();
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(
    private readonly conns: Connections,
    private readonly sync: SyncConfig,
    logger: Logger,
    private readonly opts: SyncSequencesOptions & { intervalMs?: number } = {},
  ) {
    this.log = logger.child({ sync: sync.name });
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  /** Runs now unless it ran less than the interval ago (then later); the report, or null when it did not run now or failed. */
  async maybeRun(): Promise<SequenceReport | null> {
    if (this.stopped) return null;
    const wait = this.lastRun + this.intervalMs - Date.now();
    if (wait > 0 || this.running) {
      this.schedule(wait > 0 ? wait : this.intervalMs);
      return null;
    }
    this.lastRun = Date.now();
    this.running = this.runOnce();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  /** No more runs; waits for the one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.maybeRun();
    }, ms);
    this.timer.unref();
  }

  private async runOnce(): Promise<SequenceReport | null> {
    try {
      const report = await syncSequences(this.conns, this.sync, this.log, this.opts);
      for (const w of report.warnings) this.warnOnce(w);
      if (report.set > 0) this.log.debug({ set: report.set }, 'sequences carried');
      return report;
    } catch (err) {
      this.warnOnce(`sync ${this.sync.name}: carrying sequences failed: ${errorMessage(err)}`);
      return null;
    }
  }

  private warnOnce(msg: string): void {
    if (this.warned.has(msg)) return;
    this.warned.add(msg);
    this.log.warn(msg);
  }
}
