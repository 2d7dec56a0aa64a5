import { parseConfigText } from '../orchestrator/src/config/load.js';
import type { Config } from '../orchestrator/src/config/types.js';
import { install } from '../orchestrator/src/install/install.js';
import { addTriggersForSyncs } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';

/**
 * A job with one sync `s` over the given tables, installed and with its triggers
 * on, as `capra install` and `capra add-triggers` would leave it. `nodes`
 * names the databases; with no `sources`, the first node is the one source
 * and the others are its targets (one-way); `sources` naming two or more
 * nodes makes it multi-master.
 */
export async function benchJob(opts: {
  name: string;
  nodes: Record<string, string>;
  sources?: string[];
  /** Entries of the sync's tables.include: schemas or schema.table. */
  tables: string[];
  workDir: string;
  extra?: string;
  syncExtra?: string;
}): Promise<Config> {
  const names = Object.keys(opts.nodes);
  const sources = opts.sources ?? names.slice(0, 1);
  const targets = names.filter((n) => !sources.includes(n));
  const cfg = parseConfigText(
    [
      `name: ${opts.name}`,
      'databases:',
      ...Object.entries(opts.nodes).map(([n, url]) => `  ${n}: ${url}`),
      opts.extra ?? '',
      'syncs:',
      `  s: { sources: [${sources.join(', ')}], targets: [${targets.join(', ')}], tables: { include: [${opts.tables.join(', ')}] }${opts.syncExtra ? `, ${opts.syncExtra}` : ''} }`,
      `run_dir: ${JSON.stringify(opts.workDir)}`,
      `log_dir: ${JSON.stringify(opts.workDir)}`,
    ].join('\n'),
    `${opts.workDir}/${opts.name}.yml`,
  );
  await install(cfg, silentLogger);
  await addTriggersForSyncs(cfg, silentLogger);
  return cfg;
}
