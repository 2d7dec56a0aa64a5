import type pg from 'pg';
import type { TableResult } from './table-compare.js';

/**
 * The last compare result per sync, table and compared database, in the
 * metadata database (repl.compare_result): the scheduled compare writes it,
 * capra status reads it.
 */

export interface StoredResult {
  sync: string;
  table: string;
  node: string;
  reference: string;
  rows: number;
  missing: number;
  extra: number;
  different: number;
  seconds: number;
  /** ISO time of the run. */
  ranAt: string;
}

/** Replaces the sync's stored results with these (tables no longer compared drop out). */
export async function storeResults(meta: pg.ClientBase, sync: string, results: TableResult[]): Promise<void> {
  const rows = results.map((r) => ({
    table_name: r.table,
    node: r.node,
    reference: r.reference,
    rows: r.rows,
    missing: r.missing.length,
    extra: r.extra.length,
    different: r.different.length,
    seconds: r.seconds,
  }));
  await meta.query('BEGIN');
  try {
    await meta.query('DELETE FROM repl.compare_result WHERE sync = $1', [sync]);
    await meta.query(
      `INSERT INTO repl.compare_result (sync, table_name, node, reference, rows, missing, extra, different, seconds)
       SELECT $1, table_name, node, reference, rows, missing, extra, different, seconds
         FROM jsonb_to_recordset($2::jsonb) AS r(table_name text, node text, reference text, rows bigint, missing bigint, extra bigint, different bigint, seconds float8)`,
      [sync, JSON.stringify(rows)],
    );
    await meta.query('COMMIT');
  } catch (err) {
    await meta.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Every stored result, by sync, table and node. */
export async function storedResults(meta: pg.ClientBase): Promise<StoredResult[]> {
  const r = await meta.query<StoredResult>(
    `SELECT sync, table_name AS "table", node, reference, rows::float8 AS rows, missing::float8 AS missing, extra::float8 AS extra,
            different::float8 AS different, seconds, to_char(ran_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS "ranAt"
       FROM repl.compare_result ORDER BY sync, table_name, node`,
  );
  return r.rows;
}
