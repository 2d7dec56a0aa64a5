import pg from 'pg';
import { installSide } from '../orchestrator/src/db/schema-side.js';
import { type CaptureMode, addCaptureTriggers, defaultDdlOptions } from '../orchestrator/src/triggers/ddl.js';
import { registerConsumers, trackTable } from '../orchestrator/src/triggers/consumers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { pgbenchTps } from './pgbench.js';

/**
 * Writer-side cost of capture: the same workloads with no triggers, with
 * statement-level triggers (transition tables) and with row-level triggers.
 * A consumer is registered with kick off, so this measures capture alone.
 */
export interface CaptureFigures {
  mode: 'none' | CaptureMode;
  /** pgbench TPS, single-row UPDATE per transaction. */
  updateTps: number | null;
  /** pgbench TPS, single-row INSERT per transaction. */
  insertTps: number | null;
  /** ms for one UPDATE of `bulkRows` rows (median of 3). */
  bulkUpdateMs: number;
  /** ms for one INSERT ... SELECT of `bulkRows` rows (median of 3). */
  bulkInsertMs: number;
}

export interface CaptureOptions {
  url: string;
  pgbench: string | null;
  clients: number;
  seconds: number;
  bulkRows: number;
  scriptDir: string;
}

async function q(url: string, fn: (c: pg.Client) => Promise<void>): Promise<void> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  try {
    await fn(c);
  } finally {
    await c.end();
  }
}

async function timed(url: string, sql: string, reset: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    await q(url, async (c) => {
      await c.query(reset);
      await c.query('CHECKPOINT');
      const t0 = process.hrtime.bigint();
      await c.query(sql);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  }
  return times.sort((a, b) => a - b)[1]!;
}

/** Ids of the bulk-insert rows, above any id pgbench picks. */
const BULK_BASE = 1_500_000_000;

export async function benchCapture(opts: CaptureOptions, mode: 'none' | CaptureMode): Promise<CaptureFigures> {
  const n = opts.bulkRows;
  await q(opts.url, async (c) => {
    await c.query('DROP TABLE IF EXISTS bench_capture; DROP SCHEMA IF EXISTS repl CASCADE');
    await c.query(`CREATE TABLE bench_capture (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)`);
    await c.query(`INSERT INTO bench_capture SELECT g, 0, repeat('x', 80) FROM generate_series(1, ${n}) g`);
    if (mode !== 'none') {
      await installSide(c, 'node', silentLogger);
      await registerConsumers(c, 'bench', 'bench', ['target'], false);
      const t = { schema: 'public', table: 'bench_capture' };
      await addCaptureTriggers(c, t, ['id'], mode, defaultDdlOptions, () => trackTable(c, 'bench', 'bench', t, ['id']));
    }
    await c.query('VACUUM ANALYZE bench_capture');
  });
  const cleanDeltas = mode === 'none' ? 'SELECT 1' : 'TRUNCATE repl.delta';
  // Bulk statements first, on exactly n rows: pgbench's inserts below grow the table by a different amount per mode.
  const bulkUpdateMs = await timed(opts.url, `UPDATE bench_capture SET v = v + 1 WHERE id <= ${n}`, cleanDeltas);
  const bulkInsertMs = await timed(
    opts.url,
    `INSERT INTO bench_capture SELECT g, 0, repeat('y', 80) FROM generate_series(${BULK_BASE}, ${BULK_BASE + n - 1}) g`,
    `DELETE FROM bench_capture WHERE id >= ${BULK_BASE}; ${cleanDeltas}`,
  );
  let updateTps: number | null = null;
  let insertTps: number | null = null;
  if (opts.pgbench) {
    const common = { url: opts.url, clients: opts.clients, seconds: opts.seconds, scriptDir: opts.scriptDir };
    updateTps = await pgbenchTps(opts.pgbench, { ...common, script: `\\set id random(1, ${n})\nUPDATE bench_capture SET v = v + 1 WHERE id = :id;\n` });
    insertTps = await pgbenchTps(opts.pgbench, {
      ...common,
      script: `\\set id random(${n + 1}, ${BULK_BASE - 1})\nINSERT INTO bench_capture VALUES (:id, 0, 'new') ON CONFLICT DO NOTHING;\n`,
    });
  }
  return { mode, updateTps, insertTps, bulkUpdateMs, bulkInsertMs };
}
