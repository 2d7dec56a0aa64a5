import pg from 'pg';
import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
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
  latencyTrials: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
}

const checksum = `SELECT count(*) AS n, coalesce(sum(hashtext(t::text)::bigint), 0) AS h FROM bench_repl t`;

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  return c;
}

async function same(a: pg.Client, b: pg.Client): Promise<boolean> {
  const [x, y] = await Promise.all([a.query(checksum), b.query(checksum)]);
  return x.rows[0].n === y.rows[0].n && x.rows[0].h === y.rows[0].h;
}

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('replication did not catch up in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

export async function benchReplication(opts: { source: string; target: string; workDir: string; rows: number; trials: number }): Promise<ReplicationFigures> {
  for (const url of [opts.source, opts.target]) {
    const c = await connect(url);
    await c.query('CREATE TABLE bench_repl (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)');
    await c.query(`INSERT INTO bench_repl SELECT g, 0, repeat('x', 80) FROM generate_series(1, ${opts.rows}) g`);
    await c.end();
  }
  const cfg = await benchJob({ name: 'bench', source: opts.source, target: opts.target, table: 'bench_repl', workDir: opts.workDir, extra: 'batch_rows: 100000' });
  const daemon = new Daemon(cfg, silentLogger);
  daemon.start();
  const a = await connect(opts.source);
  const b = await connect(opts.target);
  try {
    await a.query('BEGIN');
    const xid = (await a.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    await a.query('UPDATE bench_repl SET v = v + 1');
    await a.query('COMMIT');
    const t0 = process.hrtime.bigint();
    // Barrier: the target's stored position covers the burst's transaction
    // (cheap to poll, unlike a checksum that would compete with the apply).
    await until(async () => {
      const r = await b.query(`SELECT pg_visible_in_snapshot($1::xid8, position) AS ok FROM repl.applied WHERE job = 'bench'`, [xid]);
      return r.rows[0]?.ok === true;
    }, 600_000);
    const burstSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!(await same(a, b))) throw new Error('the target does not match the source after the burst');

    const lat: number[] = [];
    for (let i = 0; i < opts.trials; i++) {
      const id = opts.rows + 1 + i;
      await a.query('INSERT INTO bench_repl VALUES ($1, 0, $2)', [id, 'latency']);
      const s = process.hrtime.bigint();
      await until(async () => (await b.query('SELECT 1 FROM bench_repl WHERE id = $1', [id])).rows.length > 0, 30_000);
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    lat.sort((x, y) => x - y);
    const pct = (p: number): number => Math.round(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]! * 10) / 10;
    return {
      burstRows: opts.rows,
      burstSeconds: Math.round(burstSeconds * 1000) / 1000,
      burstRowsPerSecond: Math.round(opts.rows / burstSeconds),
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
