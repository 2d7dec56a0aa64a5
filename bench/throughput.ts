import pg from 'pg';
import { BENCH_TABLE, type BurstFigure, type LatencyFigure, connect, createBenchTable, timeBurst, timeLatency } from './burst.js';
import type { Tool, ToolName } from './tools.js';

/**
 * Throughput and latency of each tool: a one-way sync a -> b and a
 * two-source (multi-master) sync a <-> b over the bench table, each in
 * databases of its own, kicked by the writers' triggers. On each: a burst of
 * single-row UPDATEs in transactions of 1,000 and a burst of one UPDATE of
 * every row, written on a while b's table is held, then timed from its
 * release until b's contents equal a's (see timeBurst); on the one-way sync,
 * first, single-row insert latency (in the first round only).
 *
 * In rounds: each round runs every tool once, in turns first, on databases
 * of its own, and each burst's figure is its median round. One burst timed
 * once moved by a third between runs of the same code (one-way bursts at
 * 3.25x and 4.23x Bucardo in two runs ten minutes apart).
 */
export interface ThroughputFigures {
  oneWay: Bursts & { latency: LatencyFigure };
  swap: Bursts;
}

/** A sync's two bursts. */
interface Bursts {
  batched: BurstFigure;
  oneTransaction: BurstFigure;
}

/** One tool's round: the bursts, and latency in the first round. */
interface RoundFigures {
  oneWay: Bursts;
  swap: Bursts;
  latency?: LatencyFigure;
}

export interface ThroughputOptions {
  tools: Tool[];
  rounds: number;
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  rows: number;
  /** Single-row inserts timed for latency. */
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
  tool: Tool,
  round: number,
  shape: 'oneway' | 'swap',
  fn: (a: pg.Client, b: { url: string; client: pg.Client }) => Promise<T>,
): Promise<T> {
  const db = `${shape}_${tool.name.toLowerCase()}_${round + 1}`;
  await createDb(o.source.admin, db);
  await createDb(o.target.admin, db);
  const urls = { a: o.source.url(db), b: o.target.url(db) };
  await createBenchTable(Object.values(urls), o.rows);
  await tool.setUp(db, { dbs: urls, sources: shape === 'swap' ? ['a', 'b'] : ['a'], tables: [`public.${BENCH_TABLE}`], kick: 'notify' });
  await tool.start(db);
  const a = await connect(urls.a);
  const b = await connect(urls.b);
  try {
    return await fn(a, { url: urls.b, client: b });
  } finally {
    await Promise.all([a.end(), b.end()]);
    await tool.stop();
    await tool.remove(db);
  }
}

/** Every tool's figures over `o.rounds` interleaved rounds (see ThroughputFigures). */
export async function benchThroughput(o: ThroughputOptions): Promise<Partial<Record<ToolName, ThroughputFigures>>> {
  const rounds = new Map<ToolName, RoundFigures[]>();
  for (let round = 0; round < o.rounds; round++) {
    for (const tool of round % 2 === 0 ? o.tools : [...o.tools].reverse()) {
      o.progress(`throughput: ${tool.name}, round ${round + 1} of ${o.rounds}`);
      rounds.set(tool.name, [...(rounds.get(tool.name) ?? []), await throughputRound(o, tool, round)]);
    }
  }
  const figures: Partial<Record<ToolName, ThroughputFigures>> = {};
  for (const [name, rs] of rounds) {
    const median = (sync: (r: RoundFigures) => Bursts): Bursts => ({
      batched: medianRound(rs.map((r) => sync(r).batched)),
      oneTransaction: medianRound(rs.map((r) => sync(r).oneTransaction)),
    });
    figures[name] = { oneWay: { ...median((r) => r.oneWay), latency: rs[0]!.latency! }, swap: median((r) => r.swap) };
  }
  return figures;
}

/** The round with the median time (of an even count, the slower of the middle two), with every round's seconds. */
function medianRound(figures: BurstFigure[]): BurstFigure {
  const sorted = [...figures].sort((x, y) => x.seconds - y.seconds);
  return { ...sorted[Math.floor(sorted.length / 2)]!, roundSeconds: figures.map((f) => f.seconds) };
}

async function throughputRound(o: ThroughputOptions, tool: Tool, round: number): Promise<RoundFigures> {
  const name = tool.name;
  let latency: LatencyFigure | undefined;
  const oneWay = await withSync(o, tool, round, 'oneway', async (a, b) => {
    if (round === 0) {
      // Latency first, with the tool fresh and idle.
      o.progress(`latency: ${name}, ${o.trials} single-row inserts`);
      latency = await timeLatency(a, b.client, o.rows + 1, o.trials);
    }
    o.progress(`throughput: ${name}, one-way, ${o.rows} rows in transactions of 1,000`);
    const batched = await timeBurst(a, [b], o.rows, 1000);
    o.progress(`throughput: ${name}, one-way, ${o.rows} rows in one transaction`);
    const oneTransaction = await timeBurst(a, [b], o.rows, 'all');
    return { batched, oneTransaction };
  });
  const swap = await withSync(o, tool, round, 'swap', async (a, b) => {
    o.progress(`throughput: ${name}, two sources, ${o.rows} rows in transactions of 1,000`);
    const batched = await timeBurst(a, [b], o.rows, 1000);
    o.progress(`throughput: ${name}, two sources, ${o.rows} rows in one transaction`);
    const oneTransaction = await timeBurst(a, [b], o.rows, 'all');
    return { batched, oneTransaction };
  });
  return { oneWay, swap, latency };
}
