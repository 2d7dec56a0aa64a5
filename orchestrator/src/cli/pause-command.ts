import type { Config, SyncConfig } from '../config/types.js';
import { Connections } from '../db/connections.js';
import { setPaused } from '../daemon/control.js';
import type { Logger } from '../util/logger.js';

/**
 * capra pause / resume: the pause is a row in the metadata database (so it
 * outlasts restarts and reaches a standby), and the active daemon is told
 * with the same commit.
 */
export async function pauseCommand(cfg: Config, syncs: SyncConfig[], pause: boolean, out: (line: string) => void, logger: Logger): Promise<number> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    const names = syncs.map((s) => s.name);
    const changed = await conns.with(Connections.META, (c) => setPaused(c, cfg.name, names, pause));
    for (const name of names) {
      const was = changed.includes(name) ? '' : ` (was ${pause ? 'paused' : 'not paused'} already)`;
      out(pause ? `sync ${name}: paused, captured changes wait for capra resume${was}` : `sync ${name}: resumed${was}`);
    }
    return 0;
  } finally {
    await conns.close();
  }
}
