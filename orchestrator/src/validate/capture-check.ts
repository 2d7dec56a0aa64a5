import type pg from 'pg';
import { quoteTable, tableLabel } from '../db/ident.js';
import { KICK_WINDOW_MS } from '../db/kick-timing.js';
import { type CaptureMode, ROW_TRIGGERS, STATEMENT_TRIGGERS, installedTriggers } from '../triggers/ddl.js';
import type { TrackedTable } from '../triggers/resolve.js';
import type { TrackedRow } from '../triggers/consumers.js';

/**
 * Whether a source's capture is as add-triggers (triggers/ddl.ts and
 * extension/node/030_capture_generated.sql) made it: every selected table
 * registered in repl.consumer_table with its current key, its capture
 * triggers present, enabled (for the roles install makes them fire in, when
 * this role owns the table), firing on install's events and calling install's
 * functions, and its generated capture function writing the current key.
 */

interface LiveTrigger {
  name: string;
  enabled: string;
  type: number;
  fn: string;
  args: string;
}

// pg_trigger.tgtype bits (catalog/pg_trigger.h): AFTER is the absence of BEFORE (2) and INSTEAD (64).
const ROW = 1;
const INSERT = 4;
const DELETE = 8;
const UPDATE = 16;
const TRUNCATE = 32;

/** What add-triggers creates in each mode: events (tgtype) and the function each trigger calls. */
function expected(mode: CaptureMode, relid: number): Map<string, { type: number; fns: string[]; key: boolean }> {
  const capture = `capture_${relid}`;
  const kick = { type: INSERT | UPDATE | DELETE | TRUNCATE, fns: [`kick_${relid}`], key: false };
  if (mode === 'row') {
    return new Map([
      ['capra_capture_row', { type: ROW | INSERT | UPDATE | DELETE, fns: [capture], key: false }],
      ['capra_capture_replica', { type: ROW | INSERT | UPDATE | DELETE, fns: [capture], key: false }],
      // An older version captured TRUNCATE with capture_stmt; add-triggers keeps such a trigger, and it works.
      ['capra_capture_trunc', { type: TRUNCATE, fns: [capture, 'capture_stmt'], key: false }],
    ]);
  }
  return new Map([
    ['capra_capture_ins', { type: INSERT, fns: ['capture_stmt'], key: true }],
    ['capra_capture_upd', { type: UPDATE, fns: ['capture_stmt'], key: true }],
    ['capra_capture_del', { type: DELETE, fns: ['capture_stmt'], key: true }],
    ['capra_capture_trunc', { type: TRUNCATE, fns: ['capture_stmt'], key: false }],
    ['capra_kick', kick],
  ]);
}

const ENABLED: Record<string, string> = { O: 'enabled only for origin sessions', R: 'enabled only for replica sessions', A: 'enabled always' };

/** The capture triggers on a table, whether this role owns it, and the capture mode they were made in. */
async function liveTriggers(c: pg.ClientBase, relid: number): Promise<{ live: Map<string, LiveTrigger>; owner: boolean; mode: CaptureMode }> {
  const { rows } = await c.query<LiveTrigger>(
    `SELECT t.tgname AS name, t.tgenabled AS enabled, t.tgtype::int AS type, p.proname AS fn, encode(t.tgargs, 'escape') AS args
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE t.tgrelid = $1 AND t.tgname = ANY ($2::text[])`,
    [relid, [...new Set([...ROW_TRIGGERS, ...STATEMENT_TRIGGERS])]],
  );
  const own = await c.query<{ owner: boolean }>(`SELECT pg_has_role(relowner, 'USAGE') AS owner FROM pg_class WHERE oid = $1`, [relid]);
  const mode: CaptureMode = rows.some((r) => r.name === 'capra_capture_ins' || r.name === 'capra_capture_upd' || r.name === 'capra_capture_del')
    ? 'statement'
    : 'row';
  return { live: new Map(rows.map((r) => [r.name, r])), owner: own.rows[0]?.owner ?? false, mode };
}

/** What is wrong with a table's capture triggers, one phrase each. */
function triggerFaults(live: Map<string, LiveTrigger>, owner: boolean, mode: CaptureMode, relid: number, keyCols: string[]): string[] {
  const faults: string[] = [];
  const want = expected(mode, relid);
  const fires = installedTriggers(mode, true);
  // Without ownership install leaves capra_capture_replica out (it could not make it fire for replica role only).
  if (!owner && !live.has('capra_capture_replica')) want.delete('capra_capture_replica');
  const keyArgs = keyCols.map((k) => `${k}\\000`).join('');
  const older = owner && mode === 'row' && live.get('capra_capture_row')?.enabled === 'A' && !live.has('capra_capture_replica');
  if (older) {
    // Named once, as what it is, rather than as two faults of its own.
    faults.push(
      'capture trigger capra_capture_row is from an older version (enabled always, so every applied row calls it; capra_capture_replica now captures under replica role)',
    );
    want.delete('capra_capture_replica');
    fires.set('capra_capture_row', 'A');
  }
  for (const [name, w] of want) {
    const t = live.get(name);
    if (!t) faults.push(`capture trigger ${name} is missing`);
    else if (t.enabled === 'D') faults.push(`capture trigger ${name} is disabled`);
    // Without ownership only the pair must fire as install makes it (else a write is captured twice).
    else if ((owner || (live.has('capra_capture_replica') && name !== 'capra_capture_trunc')) && t.enabled !== fires.get(name)) {
      faults.push(`capture trigger ${name} is ${ENABLED[t.enabled] ?? t.enabled}, not ${ENABLED[fires.get(name)!]} as install makes it`);
    }
    if (t && t.type !== w.type) faults.push(`capture trigger ${name} fires on other events than install's (tgtype ${t.type}, not ${w.type})`);
    if (t && !w.fns.includes(t.fn)) faults.push(`capture trigger ${name} calls ${t.fn}(), not repl.${w.fns[0]}()`);
    if (t && w.key && t.args !== keyArgs) faults.push(`capture trigger ${name} captures another key than (${keyCols.join(', ')})`);
  }
  for (const name of live.keys()) {
    if (want.has(name)) continue;
    // Row mode kicks from its capture function; an older version gave it a kick trigger too (make_kick left it an empty body).
    if (mode === 'row' && name === 'capra_kick') faults.push('capture trigger capra_kick is left over from an older version (the capture function kicks now)');
    else faults.push(`capture trigger ${name} of the other capture mode is left over`);
  }
  return faults;
}

/**
 * The body repl.make_capture would write now for `keyCols`, against the
 * one the function has: generated in a transaction that is rolled back, so
 * the check compares with the generator itself (also across an upgrade that
 * changed it) and changes nothing.
 */
async function captureBodyFault(c: pg.ClientBase, relid: number, keyCols: string[]): Promise<string | null> {
  const name = `capture_${relid}`;
  const body = `SELECT p.prosrc AS src FROM pg_proc p WHERE p.pronamespace = 'repl'::regnamespace AND p.proname = $1`;
  await c.query('BEGIN');
  try {
    const actual = (await c.query<{ src: string }>(body, [name])).rows[0]?.src;
    if (actual === undefined) return `its capture function repl.${name}() is missing`;
    await c.query('SELECT repl.make_capture($1::oid::regclass, $2::text[], $3)', [relid, keyCols, KICK_WINDOW_MS]);
    const wanted = (await c.query<{ src: string }>(body, [name])).rows[0]?.src;
    return actual === wanted ? null : `its capture function repl.${name}() does not write the key (${keyCols.join(', ')}) as this capra generates it`;
  } finally {
    await c.query('ROLLBACK');
  }
}

export interface CaptureFaults {
  table: TrackedTable;
  mode: CaptureMode;
  faults: string[];
}

/** The faults of each selected table's capture on one source node (tables without any are left out). */
export async function captureFaults(c: pg.ClientBase, selected: TrackedTable[], registered: TrackedRow[]): Promise<CaptureFaults[]> {
  const out: CaptureFaults[] = [];
  for (const t of selected) {
    const reg = registered.find((r) => r.table != null && r.schema === t.schema && r.table === t.table);
    const relid = reg?.relid ?? (await c.query<{ oid: number }>('SELECT to_regclass($1)::oid::int AS oid', [quoteTable(t)])).rows[0]?.oid;
    if (relid == null) continue; // no such table here: the shape check names it
    const { live, owner, mode } = await liveTriggers(c, relid);
    const faults: string[] = [];
    if (!reg) faults.push('it is not registered for capture (add-triggers has not run since it was selected)');
    else if (reg.keyCols.join('\0') !== t.keyCols.join('\0')) {
      faults.push(`it is registered with key (${reg.keyCols.join(', ')}), but its key is now (${t.keyCols.join(', ')})`);
    }
    faults.push(...triggerFaults(live, owner, mode, relid, t.keyCols));
    if (mode === 'row') {
      const body = await captureBodyFault(c, relid, t.keyCols);
      if (body && !faults.some((f) => f.includes('capra_capture_row is missing'))) faults.push(body);
    }
    if (faults.length > 0) out.push({ table: t, mode, faults });
  }
  return out;
}

/** Registered tables the sync no longer selects, or whose relation is gone. */
export function strayRegistrations(selected: TrackedTable[], registered: TrackedRow[]): TrackedRow[] {
  const wanted = new Set(selected.map(tableLabel));
  return registered.filter((r) => r.table == null || !wanted.has(tableLabel(r)));
}
