import type pg from 'pg';
import type { TableName } from '../db/ident.js';

export type TableState = 'queued' | 'running' | 'done' | 'skipped' | 'failed' | 'cancelled';

/** One table into one receiving database. */
export interface TableProgress extends TableName {
  target: string;
  state: TableState;
  rows: number;
  bytes: number;
  estRows: number | null;
  started: Date | null;
  ended: Date | null;
  note: string | null;
}

/**
 * The progress of one clone, kept in memory by the copy and written to
 * repl.clone_table now and then (flush), so it can be read from SQL while the
 * clone runs. A flush also tells whether a cancel was asked for.
 */
export class CloneProgress {
  private readonly entries = new Map<string, TableProgress>();

  constructor(readonly cloneId: number) {}

  entry(t: TableName, target: string): TableProgress {
    const key = JSON.stringify([t.schema, t.table, target]);
    let e = this.entries.get(key);
    if (!e) {
      e = { schema: t.schema, table: t.table, target, state: 'queued', rows: 0, bytes: 0, estRows: null, started: null, ended: null, note: null };
      this.entries.set(key, e);
    }
    return e;
  }

  set(t: TableName, target: string, change: Partial<Omit<TableProgress, 'schema' | 'table' | 'target'>>): void {
    Object.assign(this.entry(t, target), change);
  }

  all(): TableProgress[] {
    return [...this.entries.values()];
  }

  /** Writes every entry; returns true when a cancel was requested for the clone. */
  async flush(meta: pg.ClientBase): Promise<boolean> {
    const es = this.all();
    const r = await meta.query<{ cancel: boolean }>(
      `WITH u AS (
         INSERT INTO repl.clone_table AS ct (clone_id, schema_name, table_name, target, state, rows, bytes, est_rows, started, ended, note)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],
                                  $9::timestamptz[], $10::timestamptz[], $11::text[])
         ON CONFLICT (clone_id, schema_name, table_name, target) DO UPDATE
           SET state = EXCLUDED.state, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes, est_rows = EXCLUDED.est_rows,
               started = EXCLUDED.started, ended = EXCLUDED.ended, note = EXCLUDED.note
       )
       SELECT cancel_requested AS cancel FROM repl.clone WHERE id = $1`,
      [
        this.cloneId,
        es.map((e) => e.schema),
        es.map((e) => e.table),
        es.map((e) => e.target),
        es.map((e) => e.state),
        es.map((e) => e.rows),
        es.map((e) => e.bytes),
        es.map((e) => e.estRows),
        es.map((e) => e.started),
        es.map((e) => e.ended),
        es.map((e) => e.note),
      ],
    );
    return r.rows[0]?.cancel === true;
  }
}
