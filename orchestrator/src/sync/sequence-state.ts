import type pg from 'pg';
import { type SequenceName, quoteSequence, sequenceLabel } from './sequence-selection.js';

/** Reading sequences on one node, and moving one forward there (never back). */

/** A sequence as one node has it. Values are bigint: kept as BigInt, passed as text. */
export interface SeqState {
  start: bigint;
  increment: bigint;
  /** null: the node's user may not read it. */
  last: bigint | null;
  isCalled: boolean;
}

/** The next value a sequence hands out; only for a readable state. */
export const nextOf = (s: SeqState, increment: bigint): bigint => (s.isCalled ? s.last! + increment : s.last!);

/**
 * The state of `seqs` on one node (missing ones absent from the map). The
 * value is read from the sequence itself where the user has SELECT (it tells
 * whether last_value was handed out yet); with USAGE only, from
 * pg_sequence_last_value, which is null until the first nextval.
 */
export async function readStates(client: pg.ClientBase, seqs: SequenceName[]): Promise<Map<string, SeqState>> {
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
export async function advance(client: pg.ClientBase, s: SequenceName, last: bigint, isCalled: boolean): Promise<boolean> {
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
