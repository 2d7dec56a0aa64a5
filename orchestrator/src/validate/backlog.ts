import type { SyncConfig } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import { lanePending } from '../sync/lane-pending.js';
import type { Backlog } from './report.js';

/**
 * The delta backlog of each lane: changes captured on the source that its
 * target has not applied, and the age of the oldest, as `capra status`
 * counts them. Reported, never a problem by itself: how much is normal
 * depends on the write rate and the kick settings, which validate cannot
 * know, and a lane that stops making progress is what `capra status`
 * (failing lanes, `--max-lag`) watches. validate is about whether the
 * installation is right.
 */
export async function syncBacklog(conns: Connections, job: string, sync: SyncConfig): Promise<Backlog[]> {
  const lanes = sync.sources.flatMap((source) => receiversOf(sync, source).map((target) => ({ source, target })));
  return Promise.all(
    lanes.map(async ({ source, target }): Promise<Backlog> => {
      try {
        const p = await lanePending(conns, job, sync.name, source, target);
        return { sync: sync.name, source, target, rows: p?.rows ?? null, oldestSeconds: p === null ? null : Math.round(p.lagSeconds) };
      } catch (err) {
        return { sync: sync.name, source, target, rows: null, oldestSeconds: null, error: errorMessage(err) };
      }
    }),
  );
}
