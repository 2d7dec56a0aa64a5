import cron from 'node-cron';
import type { SyncConfig } from '../config/types.js';
import { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { compareSync, differing } from './compare.js';
import { storeResults } from './results-store.js';
import type { TableResult } from './table-compare.js';

/**
 * The daemon's scheduled compare of a sync (its `compare` cron expression):
 * each run's result per table is stored in the metadata database and handed
 * to `onResults` (the metrics). A run still going when the next is due makes
 * that one be skipped, not queued.
 */
export function scheduleCompare(
  job: string,
  sync: SyncConfig,
  conns: Connections,
  logger: Logger,
  onResults: (sync: string, results: TableResult[], at: Date) => void,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  const log = logger.child({ sync: sync.name });
  const runOnce = async (): Promise<void> => {
    try {
      const results = await compareSync(conns, job, sync, {}, log);
      await conns.with(Connections.META, (c) => storeResults(c, sync.name, results));
      onResults(sync.name, results, new Date());
      const rows = results.reduce((n, r) => n + differing(r), 0);
      (rows > 0 ? log.warn : log.info).call(log, { tables: results.length, differing: rows }, 'scheduled compare done');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'scheduled compare failed');
    }
  };
  const task = cron.schedule(
    sync.compare!,
    () => {
      if (running) return;
      running = runOnce().finally(() => (running = null));
    },
    { name: `capra-${job}-${sync.name}-compare` },
  );
  return {
    stop: async () => {
      await task.stop();
      await running;
    },
  };
}
