import type pg from 'pg';
import type { Config } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import type { Problem } from './report.js';

/**
 * Consumers (repl.consumer rows of this job) that no sync of the config
 * owns any more: of a sync that is gone, on a node that is no longer a
 * source of its sync, or for a target the sync no longer has. Each holds
 * back the purge of the delta log on its node for ever.
 */
export interface Orphan {
  sync: string;
  target: string;
  /** gone: the sync left the config; not-source: this node is no longer one of its sources; target: the target left the sync. */
  why: 'gone' | 'not-source' | 'target';
}

export async function orphanConsumers(c: pg.ClientBase, cfg: Config, node: string): Promise<Orphan[]> {
  const { rows } = await c.query<{ sync: string; target: string }>('SELECT sync, target FROM repl.consumer WHERE job = $1 ORDER BY sync, target', [cfg.name]);
  const out: Orphan[] = [];
  for (const r of rows) {
    const sync = cfg.syncs[r.sync];
    if (!sync) out.push({ ...r, why: 'gone' });
    else if (!sync.sources.includes(node)) out.push({ ...r, why: 'not-source' });
    else if (!receiversOf(sync, node).includes(r.target)) out.push({ ...r, why: 'target' });
  }
  return out;
}

const WHAT: Record<Orphan['why'], string> = {
  gone: 'its sync is no longer in the config',
  'not-source': 'this node is no longer a source of its sync',
  target: 'the sync no longer has that target',
};

const FIX: Record<Orphan['why'], string> = {
  gone: 'forget the sync here as drop-triggers does (its consumers, positions, and the capture triggers of tables nothing else captures)',
  'not-source': "remove the sync's consumers here and the capture triggers of tables nothing else captures",
  target: "re-register the sync's consumers here as add-triggers does, which removes this one",
};

export function orphanProblem(node: string, o: Orphan): Problem {
  return { node, sync: o.sync, what: `consumer for target ${o.target} is orphaned: ${WHAT[o.why]}`, fix: FIX[o.why] };
}
