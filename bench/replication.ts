import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { BENCH_TABLE, type BurstFigure, connect, createBenchTable, timeBurst, until } from './burst.js';
import { benchJob } from './job.js';

/**
 * One-way replication figures: rows/s from the commit of a burst until the
 * target has applied it (then checked equal to the source by checksum), and the
 * latency of a single-row insert until it is visible on the target.
 */
export interface ReplicationFigures {
  burstRows: number;
  burstSeconds: number;
  burstRowsPerSecond: number;
  /** The same number of rows as single-row updates in transactions of 1,000. */
  batchedBurst: BurstFigure;
  latencyTrials: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
}

export async function benchReplication(opts: { source: string; target: string; workDir: string; rows: number; trials: number }): Promise<ReplicationFigures> {
  await createBenchTable([opts.source, opts.target], opts.rows);
  const cfg = await benchJob({ name: 'bench', nodes: { a: opts.source, b: opts.target }, tables: [`public.${BENCH_TABLE}`], workDir: opts.workDir, extra: 'batch_rows: 100000' });
  const daemon = new Daemon(cfg, silentLogger);
  daemon.start();
  const a = await connect(opts.source);
  const b = await connect(opts.target);
  try {
    const clients = new Map([['a', a], ['b', b]]);
    const burst = await timeBurst(cfg.name, clients, [{ node: 'a', firstId: 1, rows: opts.rows }], 'all');
    const batchedBurst = await timeBurst(cfg.name, clients, [{ node: 'a', firstId: 1, rows: opts.rows }], 1000);

    const lat: number[] = [];
    for (let i = 0; i < opts.trials; i++) {
      const id = opts.rows + 1 + i;
      await a.query(`INSERT INTO ${BENCH_TABLE} VALUES ($1, 0, $2)`, [id, 'latency']);
      const s = process.hrtime.bigint();
      await until(async () => (await b.query(`SELECT 1 FROM ${BENCH_TABLE} WHERE id = $1`, [id])).rows.length > 0, 30_000);
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    lat.sort((x, y) => x - y);
    const pct = (p: number): number => Math.round(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]! * 10) / 10;
    return {
      burstRows: burst.rows,
      burstSeconds: burst.seconds,
      burstRowsPerSecond: burst.rowsPerSecond,
      batchedBurst,
      latencyTrials: opts.trials,
      latencyP50Ms: pct(50),
      latencyP95Ms: pct(95),
    };
  } finally {
    await a.end();
    await b.end();
    await daemon.stop();
  }
}
