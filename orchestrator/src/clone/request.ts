import type pg from 'pg';
import type { TableName } from '../db/ident.js';

/**
 * A clone as queued in the metadata database (repl.clone): which tables, from
 * which sources to which targets. With one source the targets are emptied
 * first; with several, every source also receives the others' rows and
 * nothing is emptied (the sources are assumed not to overlap).
 */
export interface CloneDb {
  db: string;
  role: 'source' | 'target';
}

/**
 * A table of a clone. With drop_indexes, its indexes larger than
 * drop_indexes_above bytes are dropped for the copy: every one when the key
 * is absent, none when it is null (a sync's table without a copy_indexes
 * threshold).
 */
export interface CloneTable extends TableName {
  drop_indexes_above?: number | null;
}

export interface CloneRequest {
  id: number;
  sync: string | null;
  tables: CloneTable[];
  dbs: CloneDb[];
  onlyEmpty: boolean;
  dropIndexes: boolean;
  origin: 'request' | 'copy_data';
}

export type CloneState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** Why a clone's copy was aborted when a cancel was asked for (repl.clone_cancel). */
export class CloneCancelled extends Error {
  constructor(id: number) {
    super(`clone ${id} was cancelled`);
    this.name = 'CloneCancelled';
  }
}

interface Row {
  id: string;
  sync: string | null;
  tables: CloneTable[];
  dbs: CloneDb[];
  only_empty: boolean;
  drop_indexes: boolean;
  origin: 'request' | 'copy_data';
}

const columns = 'id, sync, tables, dbs, only_empty, drop_indexes, origin';

function fromRow(r: Row): CloneRequest {
  return {
    id: Number(r.id),
    sync: r.sync,
    tables: r.tables,
    dbs: r.dbs,
    onlyEmpty: r.only_empty,
    dropIndexes: r.drop_indexes,
    origin: r.origin,
  };
}

export function sourcesOf(req: CloneRequest): string[] {
  return req.dbs.filter((d) => d.role === 'source').map((d) => d.db);
}

/** The databases that receive rows: the targets, and with several sources every source as well. */
export function receiversOf(req: CloneRequest): CloneDb[] {
  return sourcesOf(req).length > 1 ? req.dbs : req.dbs.filter((d) => d.role === 'target');
}

/** Takes the next due queued clone and marks it running; null when none is due. */
export async function claimNextClone(meta: pg.ClientBase): Promise<CloneRequest | null> {
  const r = await meta.query<Row>(
    `UPDATE repl.clone SET state = 'running', started = now()
      WHERE id = (SELECT id FROM repl.clone WHERE state = 'queued' AND startwhen <= now()
                   ORDER BY startwhen, id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING ${columns}`,
  );
  return r.rows[0] ? fromRow(r.rows[0]) : null;
}

/** Seconds until the next queued clone is due (null: none queued). */
export async function nextDueInSeconds(meta: pg.ClientBase): Promise<number | null> {
  const r = await meta.query<{ s: number | null }>(`SELECT extract(epoch FROM min(startwhen) - now())::float8 AS s FROM repl.clone WHERE state = 'queued'`);
  return r.rows[0]?.s ?? null;
}

/**
 * Clones left 'running' by a daemon that went away: nothing of their open
 * table copies was committed, so a requested clone is queued again (the
 * request stands); a copy_data clone is failed, its lane makes a new one.
 */
export async function recoverInterrupted(meta: pg.ClientBase, id?: number): Promise<number> {
  const r = await meta.query(
    `WITH c AS (
       UPDATE repl.clone SET state = CASE origin WHEN 'request' THEN 'queued' ELSE 'failed' END,
              started = CASE origin WHEN 'request' THEN NULL ELSE started END,
              ended = CASE origin WHEN 'request' THEN NULL ELSE now() END,
              error = 'interrupted: the daemon stopped while it ran'
        WHERE state = 'running' AND NOT cancel_requested AND ($1::bigint IS NULL OR id = $1) RETURNING id
     ), x AS (
       UPDATE repl.clone SET state = 'cancelled', ended = now(), error = 'cancelled'
        WHERE state = 'running' AND cancel_requested AND ($1::bigint IS NULL OR id = $1) RETURNING id
     )
     SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM x) AS n`,
    [id ?? null],
  );
  return Number(r.rows[0].n);
}

/** Records how a clone ended. */
export async function finishClone(meta: pg.ClientBase, id: number, state: Exclude<CloneState, 'queued' | 'running'>, error?: string): Promise<void> {
  await meta.query(`UPDATE repl.clone SET state = $2, ended = now(), error = $3 WHERE id = $1`, [id, state, error ?? null]);
}

/** Creates a copy_data clone, already running (the lane that needs it carries it out itself). */
export async function startSeedClone(
  meta: pg.ClientBase,
  sync: string,
  tables: CloneTable[],
  source: string,
  target: string,
  onlyEmpty: boolean,
): Promise<CloneRequest> {
  const dbs: CloneDb[] = [
    { db: source, role: 'source' },
    { db: target, role: 'target' },
  ];
  const r = await meta.query<Row>(
    `WITH c AS (
       INSERT INTO repl.clone (sync, tables, dbs, only_empty, drop_indexes, origin, state, started)
       VALUES ($1, $2, $3, $4, $6, 'copy_data', 'running', now()) RETURNING *
     ), t AS (
       INSERT INTO repl.clone_table (clone_id, schema_name, table_name, target)
       SELECT c.id, x->>'schema', x->>'table', $5 FROM c, jsonb_array_elements($2::jsonb) x
     )
     SELECT ${columns} FROM c`,
    [sync, JSON.stringify(tables), JSON.stringify(dbs), onlyEmpty, target, tables.some((t) => typeof t.drop_indexes_above === 'number')],
  );
  return fromRow(r.rows[0]!);
}
