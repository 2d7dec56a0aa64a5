import pg from 'pg';
import { BENCH_TABLE, type BurstFigure, type LatencyFigure, connect, createBenchTable, timeBurst, timeLatency } from './burst.js';
import type { Tool } from './tools.js';

/**
 * Throughput and latency of one tool: a one-way sync a -> b and a
 * two-source (multi-master) sync a <-> b over the bench table, each in
 * databases of its own, kicked by the writers' triggers. On each: a burst of
 * single-row UPDATEs in transactions of 1,000 and a burst of one UPDATE of
 * every row, written on a while b's table is held, then timed from its
 * release until b's contents equal a's (see timeBurst); on the one-way sync,
 * first, single-row insert latency.
 */
export interface ThroughputFigures {
  oneWay: { batched: BurstFigure; oneTransaction: BurstFigure; latency: LatencyFigure };
  swap: { batched: BurstFigure; oneTransaction: BurstFigure };
}

export interface ThroughputOptions {
  tool: Tool;
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  rows: number;
  trials: number;
  progress: (line: string) => void;
}

export async function createDb(admin: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin, application_name: 'capra-bench' });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

/** Sets up a sync over the bench table in fresh databases, runs `fn` with it replicating, and stops it. */
async function withSync<T>(
  o: ThroughputOptions,
  shape: 'oneway' | 'swap',
  fn: (a: pg.Client, b: { url: string; client: pg.Client }) => Promise<T>,
): Promise<T> {
  const db = `${shape}_${o.tool.name.toLowerCase()}`;
  await createDb(o.source.admin, db);
  await createDb(o.target.admin, db);
  const urls = { a: o.source.url(db), b: o.target.url(db) };
  await createBenchTable(Object.values(urls), o.rows);
  await o.tool.setUp(db, { dbs: urls, sources: shape === 'swap' ? ['a', 'b'] : ['a'], tables: [`public.${BENCH_TABLE}`], kick: 'notify' });
  await o.tool.start(db);
  const a = await connect(urls.a);
  const b = await connect(urls.b);
  try {
    return await fn(a, { url: urls.b, client: b });
  } finally {
    await Promise.all([a.end(), b.end()]);
    await o.tool.stop();
    await o.tool.remove(db);
  }
}

export async function benchThroughput(o: ThroughputOptions): Promise<ThroughputFigures> {
  const name = o.tool.name;
  const oneWay = await withSync(o, 'oneway', async (a, b) => {
    // Latency first, with the tool fresh and idle.
    o.progress(`latency: ${name}, ${o.trials} single-row inserts`);
    const latency = await timeLatency(a, b.client, o.rows + 1, o.trials);
    o.progress(`throughput: ${name}, one-way, ${o.rows} rows in transactions of 1,000`);
    const batched = await timeBurst(a, [b], o.rows, 1000);
    o.progress(`throughput: ${name}, one-way, ${o.rows} rows in one transaction`);
    const oneTransaction = await timeBurst(a, [b], o.rows, 'all');
    return { batched, oneTransaction, latency };
  });
  const swap = await withSync(o, 'swap', async (a, b) => {
    o.progress(`throughput: ${name}, two sources, ${o.rows} rows in transactions of 1,000`);
    const batched = await timeBurst(a, [b], o.rows, 1000);
    o.progress(`throughput: ${name}, two sources, ${o.rows} rows in one transaction`);
    const oneTransaction = await timeBurst(a, [b], o.rows, 'all');
    return { batched, oneTransaction };
  });
  return { oneWay, swap };
}
