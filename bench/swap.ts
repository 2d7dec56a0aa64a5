import type pg from 'pg';
import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { BENCH_TABLE, type BurstFigure, connect, createBenchTable, timeBurst } from './burst.js';
import { benchJob } from './job.js';

/**
 * Multi-master (swap) throughput: every node is a source. rows/s from the
 * first commit of a burst on one node until every other node has it (then
 * checked equal by checksum), and for writes on the first two nodes at once.
 */
export interface SwapFigures {
  nodes: number;
  /** Single-row updates in transactions of 1,000 on the first node. */
  batched: BurstFigure;
  /** The same rows in one UPDATE, one transaction, on the first node. */
  oneTransaction: BurstFigure;
  /** Half the rows on the first node and the other half on the second, at once, in transactions of 1,000. */
  bothSides: BurstFigure;
}

export async function benchSwap(opts: { name: string; nodes: Record<string, string>; workDir: string; rows: number }): Promise<SwapFigures> {
  const names = Object.keys(opts.nodes);
  await createBenchTable(Object.values(opts.nodes), opts.rows);
  const cfg = await benchJob({ name: opts.name, nodes: opts.nodes, sources: names, tables: [`public.${BENCH_TABLE}`], workDir: opts.workDir, extra: 'batch_rows: 100000' });
  const daemon = new Daemon(cfg, silentLogger);
  daemon.start();
  const clients = new Map<string, pg.Client>();
  try {
    for (const n of names) clients.set(n, await connect(opts.nodes[n]!));
    const [first, second] = names as [string, string];
    const all = [{ node: first, firstId: 1, rows: opts.rows }];
    const half = Math.floor(opts.rows / 2);
    return {
      nodes: names.length,
      batched: await timeBurst(cfg.name, clients, all, 1000),
      oneTransaction: await timeBurst(cfg.name, clients, all, 'all'),
      bothSides: await timeBurst(
        cfg.name,
        clients,
        [
          { node: first, firstId: 1, rows: half },
          { node: second, firstId: half + 1, rows: opts.rows - half },
        ],
        1000,
      ),
    };
  } finally {
    await Promise.all([...clients.values()].map((c) => c.end()));
    await daemon.stop();
  }
}
