import type pg from 'pg';
import { CapraError } from '../util/errors.js';
import type { CloneState } from './request.js';

/** A clone's state and progress as read from the metadata database (what `capra clone --wait` shows). */
export interface CloneView {
  id: number;
  state: CloneState;
  error: string | null;
  started: Date | null;
  ended: Date | null;
  /** Seconds it has run (to its end, or to now). */
  seconds: number;
  rows: number;
  bytes: number;
  /** Sum of the source estimates of the (table, receiver) pairs not skipped; null while unknown. */
  estRows: number | null;
  tables: { table: string; target: string; state: string; rows: number; estRows: number | null; note: string | null }[];
}

export async function readClone(meta: pg.ClientBase, id: number): Promise<CloneView> {
  const r = await meta.query<{
    state: CloneState;
    error: string | null;
    started: Date | null;
    ended: Date | null;
    seconds: number | null;
    tables: { table: string; target: string; state: string; rows: string; bytes: string; est_rows: string | null; note: string | null }[];
  }>(
    `SELECT c.state, c.error, c.started, c.ended,
            extract(epoch FROM coalesce(c.ended, now()) - c.started)::float8 AS seconds,
            coalesce((SELECT json_agg(json_build_object(
                        'table', quote_ident(ct.schema_name) || '.' || quote_ident(ct.table_name), 'target', ct.target,
                        'state', ct.state, 'rows', ct.rows, 'bytes', ct.bytes, 'est_rows', ct.est_rows, 'note', ct.note)
                        ORDER BY ct.schema_name, ct.table_name, ct.target)
                        FROM repl.clone_table ct WHERE ct.clone_id = c.id), '[]') AS tables
       FROM repl.clone c WHERE c.id = $1`,
    [id],
  );
  const row = r.rows[0];
  if (!row) throw new CapraError(`no clone ${id}`);
  const live = row.tables.filter((t) => t.state !== 'skipped' && t.state !== 'cancelled');
  const unknown = live.some((t) => t.est_rows === null);
  return {
    id,
    state: row.state,
    error: row.error,
    started: row.started,
    ended: row.ended,
    seconds: row.seconds ?? 0,
    rows: row.tables.reduce((n, t) => n + Number(t.rows), 0),
    bytes: row.tables.reduce((n, t) => n + Number(t.bytes), 0),
    estRows: live.length === 0 || unknown ? null : live.reduce((n, t) => n + Number(t.est_rows), 0),
    tables: row.tables.map((t) => ({
      table: t.table,
      target: t.target,
      state: t.state,
      rows: Number(t.rows),
      estRows: t.est_rows === null ? null : Number(t.est_rows),
      note: t.note,
    })),
  };
}

export function isFinished(state: CloneState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

const MB = 1024 * 1024;

function duration(s: number): string {
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}

const count = (n: number): string => n.toLocaleString('en-US');

/** One progress line: a bar (when the total is known), rows, MB, rate and ETA, and the table being copied. */
export function progressLine(v: CloneView, width = 24): string {
  if (v.state === 'queued') return `clone ${v.id}: queued`;
  const rate = v.seconds > 0 ? v.rows / v.seconds : 0;
  const parts: string[] = [];
  if (v.estRows !== null && v.estRows > 0) {
    const frac = Math.min(1, v.rows / v.estRows);
    const full = Math.round(frac * width);
    parts.push(`[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(Math.floor(frac * 100)).padStart(3)}%`);
    parts.push(`${count(v.rows)}/${count(v.estRows)} rows`);
  } else {
    parts.push(`${count(v.rows)} rows`);
  }
  parts.push(`${(v.bytes / MB).toFixed(1)} MB`);
  parts.push(`${count(Math.round(rate))} rows/s`);
  if (v.state === 'running' && v.estRows !== null && rate > 0 && v.rows < v.estRows) parts.push(`ETA ${duration((v.estRows - v.rows) / rate)}`);
  const current = v.tables.find((t) => t.state === 'running');
  if (current) parts.push(`${current.table} -> ${current.target}`);
  return `clone ${v.id}: ${parts.join('  ')}`;
}

/** The closing line of a finished clone. */
export function summaryLine(v: CloneView): string {
  const copied = new Set(v.tables.filter((t) => t.state === 'done').map((t) => t.table)).size;
  const skipped = v.tables.filter((t) => t.state === 'skipped').length;
  const mbs = v.seconds > 0 ? v.bytes / MB / v.seconds : 0;
  const what = `${copied} table(s), ${count(v.rows)} rows, ${(v.bytes / MB).toFixed(1)} MB in ${v.seconds.toFixed(1)}s (${mbs.toFixed(1)} MB/s)`;
  const skip = skipped > 0 ? `; ${skipped} skipped (target not empty)` : '';
  if (v.state === 'done') return `clone ${v.id} done: ${what}${skip}`;
  return `clone ${v.id} ${v.state}: ${v.error ?? 'no reason recorded'} (${what} before)${skip}`;
}
