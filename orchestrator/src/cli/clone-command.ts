import type pg from 'pg';
import type { Config } from '../config/types.js';
import { isFinished, progressLine, readClone, summaryLine } from '../clone/watch.js';
import { Connections } from '../db/connections.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { CapraError } from '../util/errors.js';
import { activeHolder } from '../daemon/job-lock.js';
import { sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';

export interface CloneOptions {
  sync?: string;
  /** Table names as given (table or schema.table, SQL quoting). */
  tables?: string[];
  dbs?: string;
  /** A table group of the config, in place of tables. */
  relgroup?: string;
  /** A database group of the config, in place of dbs: its first database is the source. */
  dbgroup?: string;
  /** A PostgreSQL interval: not before now() + start. */
  start?: string;
  onlyEmpty: boolean;
  dropIndexes: boolean;
  /** With dropIndexes: only the indexes larger than this size (as pg_size_bytes reads it). */
  dropIndexesAbove?: string;
  /** Wait for the clone to end, showing its progress. */
  wait: boolean;
  /** Wait for an existing clone. */
  watch?: number;
  cancel?: number;
  list: boolean;
}

export interface CloneIo {
  out: (line: string) => void;
  /** Progress goes here; on a terminal each update rewrites the line. */
  progress: NodeJS.WriteStream | { isTTY?: boolean; write(s: string): boolean };
}

/** Splits "a,b" on commas outside double quotes ("odd,name" stays one). */
export function splitList(text: string): string[] {
  const items: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      items.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  items.push(cur.trim());
  return items.filter((s) => s !== '');
}

/**
 * `capra clone`: queues a clone through repl.clone() (so the CLI and psql
 * check arguments the same way), and with --wait shows its progress until it
 * ends; --cancel ID, --watch ID and --list act on clones already queued.
 * Exit status: 0 when the clone is queued (or, waiting, done); 1 when it
 * failed or was cancelled.
 */
export async function cloneCommand(cfg: Config, o: CloneOptions, io: CloneIo, logger: Logger): Promise<number> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    return await conns.with(Connections.META, async (meta) => {
      if (o.cancel !== undefined) {
        const r = await meta.query<{ state: string }>('SELECT repl.clone_cancel($1) AS state', [o.cancel]);
        io.out(`clone ${o.cancel}: ${r.rows[0]!.state}`);
        return 0;
      }
      if (o.list) {
        const r = await meta.query<{
          id: string;
          state: string;
          sync: string | null;
          origin: string;
          startwhen: Date;
          ended: Date | null;
          error: string | null;
        }>(`SELECT id, state, sync, origin, startwhen, ended, error FROM repl.clone ORDER BY id DESC LIMIT 20`);
        if (r.rows.length === 0) io.out('no clones');
        for (const c of r.rows) {
          io.out(
            `${c.id}  ${c.state.padEnd(9)}  ${c.sync ?? '-'}  ${c.origin}  due ${c.startwhen.toISOString()}${c.ended ? `  ended ${c.ended.toISOString()}` : ''}${c.error ? `  ${c.error}` : ''}`,
          );
        }
        return 0;
      }
      let id = o.watch;
      if (id === undefined) {
        try {
          const r = await meta.query<{ id: string }>(
            `SELECT repl.clone(sync => $1, tables => $2::text[], dbs => $3, start => coalesce($4::interval, '0'),
                               only_empty => $5, drop_indexes => $6, drop_indexes_above => $7, relgroup => $8, dbgroup => $9) AS id`,
            [
              o.sync ?? null,
              o.tables ?? null,
              o.dbs ?? null,
              o.start ?? null,
              o.onlyEmpty,
              o.dropIndexes,
              o.dropIndexesAbove ?? null,
              o.relgroup ?? null,
              o.dbgroup ?? null,
            ],
          );
          id = Number(r.rows[0]!.id);
        } catch (err) {
          if (sqlState(err) === SQLSTATE.invalidDatetimeFormat) throw new CapraError(`option --start: ${(err as Error).message}`);
          throw err;
        }
        io.out(`clone ${id} queued`);
        if (!o.wait) return 0;
      }
      if ((await activeHolder(meta, cfg.name)) === null) {
        io.progress.write(`note: no daemon of job ${cfg.name} is active; the clone runs once one is (capra start)\n`);
      }
      return watch(meta, id, io);
    });
  } finally {
    await conns.close();
  }
}

async function watch(meta: pg.ClientBase, id: number, io: CloneIo): Promise<number> {
  const tty = io.progress.isTTY === true;
  const interrupted = new AbortController();
  const onInt = (): void => interrupted.abort();
  process.once('SIGINT', onInt);
  let lastLine = '';
  let lastPrinted = 0;
  try {
    for (;;) {
      const v = await readClone(meta, id);
      if (isFinished(v.state)) {
        if (tty && lastLine) io.progress.write('\r\x1b[K');
        io.out(summaryLine(v));
        for (const t of v.tables) if (t.state === 'failed' && t.note) io.out(`  ${t.table} -> ${t.target}: ${t.note}`);
        return v.state === 'done' ? 0 : 1;
      }
      const line = progressLine(v);
      if (tty) io.progress.write(`\r\x1b[K${line}`);
      else if (line !== lastLine && Date.now() - lastPrinted >= 2000) {
        io.progress.write(`${line}\n`);
        lastPrinted = Date.now();
      }
      lastLine = line;
      if (!(await sleep(tty ? 250 : 500, interrupted.signal))) {
        if (tty) io.progress.write('\n');
        io.out(`clone ${id} goes on in the daemon; capra clone --cancel ${id} stops it`);
        return 130;
      }
    }
  } finally {
    process.off('SIGINT', onInt);
  }
}
