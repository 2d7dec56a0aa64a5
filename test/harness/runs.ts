// Runs driven by hand, for tests that look at what a run does: the queries
// it sends, and a multi-master sync's runs one at a time (runSwap, as the
// daemon's worker calls it).
import pg from 'pg';
import { Connections } from '../../orchestrator/src/db/connections.js';
import { ConflictResolver } from '../../orchestrator/src/sync/conflict.js';
import { DownNodes } from '../../orchestrator/src/sync/down-nodes.js';
import { type SwapResult, type SwapState, runSwap } from '../../orchestrator/src/sync/swap.js';
import { silentLogger } from '../../orchestrator/src/util/logger.js';
import type { Job } from './capra.js';
import type { TeardownTest } from './db.js';

/** What `fn` sends on every connection of this process, each query's text (pg's own query method, wrapped meanwhile; the servers are real). */
export async function sentDuring<T>(fn: () => Promise<T>): Promise<{ result: T; sent: string[] }> {
  const sent: string[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    if (typeof args[0] === 'string') sent.push(args[0]);
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    return { result: await fn(), sent };
  } finally {
    pg.Client.prototype.query = query;
  }
}

/** The queries among `sent` that read a batch (repl.batch_changes). */
export const batchReads = (sent: string[]): number => sent.filter((s) => s.includes('repl.batch_changes')).length;

/** A function that makes one run of the job's multi-master sync `sync`, on connections of its own (closed at teardown). */
export function swapRunner(t: TeardownTest, job: Job, sync = 's'): () => Promise<SwapResult> {
  const conns = new Connections(job.cfg, 'capra-sync', silentLogger);
  const stop = new AbortController();
  t.teardown(async () => {
    stop.abort();
    await conns.close();
  });
  const config = job.cfg.syncs[sync]!;
  const state: SwapState = { roles: new Map(), down: new DownNodes(conns, () => {}, stop.signal) };
  const resolver = new ConflictResolver(conns, config);
  return () => runSwap(conns, { job: job.name, sync: config, batchRows: job.cfg.batchRows, state, resolver });
}
