import type { Config, SyncConfig } from '../config/types.js';
import { type KickResult, kick, timeoutReason } from '../status/kick-wait.js';
import { CapraError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

export interface KickCommandOptions {
  /** --wait [SECONDS]: wait at most this long. */
  waitSeconds?: number;
  json: boolean;
}

function summary(r: KickResult, syncs: SyncConfig[]): string[] {
  const names = syncs.map((s) => s.name).join(', ');
  const lines = [`kicked sync(s) ${names}${r.daemon ? ` (active daemon ${r.daemon})` : ''}`];
  if (!r.waited) return lines;
  for (const l of r.lanes) {
    lines.push(`  ${l.sync}: ${l.source} -> ${l.target}: ${l.reached ? `caught up in ${l.seconds} s` : `NOT caught up: ${l.blocker ?? '?'}`}`);
  }
  return lines;
}

/**
 * capra kick: a run now; with --wait, 0 once every lane has caught up with
 * the kick, 1 with the reason otherwise (the JSON, with --json, still printed).
 */
export async function kickCommand(cfg: Config, syncs: SyncConfig[], opts: KickCommandOptions, out: (line: string) => void, logger: Logger): Promise<number> {
  const r = await kick(cfg, syncs, logger, opts.waitSeconds === undefined ? {} : { waitSeconds: opts.waitSeconds });
  if (opts.json) out(JSON.stringify(r, null, 2));
  else for (const line of summary(r, syncs)) out(line);
  if (r.waited && !r.reached) throw new CapraError(timeoutReason(r, opts.waitSeconds!));
  if (!r.waited && r.daemon === null) throw new CapraError(`no daemon of job ${cfg.name} is active to run the kick (capra start)`);
  return 0;
}
