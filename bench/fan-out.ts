import { type BurstFigure, connect, timeBurst } from './burst.js';
import { setUpBenchSync } from './backlog.js';
import type { Row } from './table.js';
import type { Tool, ToolName } from './tools.js';

/**
 * The fan-out phase: a multi-master sync of N sources (every node a source),
 * their databases alternating between the bench's two servers, and a burst
 * of `rows` single-row UPDATEs in transactions of 1,000 on the first node,
 * timed as every burst is (timeBurst: from the release of the committed burst
 * until every other node's contents equal the writer's). So how the cost
 * grows with the number of nodes is a number.
 */
export interface FanOutFigure {
  nodes: number;
  burst: BurstFigure;
}

export interface FanOutOptions {
  tool: Tool;
  servers: { admin: string; url: (db: string) => string }[];
  nodeCounts: number[];
  rows: number;
  progress: (line: string) => void;
}

async function runCount(o: FanOutOptions, count: number): Promise<FanOutFigure> {
  const db = `fanout${count}_${o.tool.name.toLowerCase()}`;
  const names = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  const nodes = Object.fromEntries(names.map((n, i) => [n, o.servers[i % o.servers.length]!]));
  const urls = await setUpBenchSync(o.tool, db, nodes, names, o.rows);
  await o.tool.start(db);
  const clients = await Promise.all(names.map((n) => connect(urls[n]!)));
  try {
    o.progress(`fan-out: ${o.tool.name}, ${count} sources, ${o.rows} rows on one in transactions of 1,000`);
    const others = names.slice(1).map((n, i) => ({ url: urls[n]!, client: clients[i + 1]! }));
    return { nodes: count, burst: await timeBurst(clients[0]!, others, o.rows, 1000) };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
    await o.tool.stop();
    await o.tool.remove(db);
  }
}

export async function benchFanOut(o: FanOutOptions): Promise<FanOutFigure[]> {
  const figures: FanOutFigure[] = [];
  for (const count of o.nodeCounts) figures.push(await runCount(o, count));
  return figures;
}

/** One table row per node count: the time until all agree, in ms (the table shows seconds to one decimal only). */
export function fanOutRows(figures: Partial<Record<ToolName, FanOutFigure[]>>, nodeCounts: number[], rows: number): Row[] {
  const ms = (t: ToolName, n: number): number | null => {
    const s = figures[t]?.find((f) => f.nodes === n)?.burst.seconds;
    return s === undefined ? null : Math.round(s * 1000);
  };
  return nodeCounts.map((n) => ({
    metric: `fan-out, ${n} sources, ${rows.toLocaleString('en-US')}-row burst on one, until all agree`,
    unit: 'ms',
    capra: ms('Capra', n),
    bucardo: ms('Bucardo', n),
    better: 'lower',
  }));
}
