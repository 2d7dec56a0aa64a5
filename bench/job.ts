import { parseConfigText } from '../orchestrator/src/config/load.js';
import type { Config } from '../orchestrator/src/config/types.js';
import { install } from '../orchestrator/src/install/install.js';
import { addTriggersForSyncs } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';

/**
 * A one-way job a -> b over one table, installed and with its triggers on,
 * as `capra install` and `capra add-triggers` would leave it.
 */
export async function benchJob(opts: { name: string; source: string; target: string; table: string; workDir: string; extra?: string; syncExtra?: string }): Promise<Config> {
  const cfg = parseConfigText(
    [
      `name: ${opts.name}`,
      'databases:',
      `  a: ${opts.source}`,
      `  b: ${opts.target}`,
      opts.extra ?? '',
      'syncs:',
      `  s: { sources: [a], targets: [b], tables: { include: [public.${opts.table}] }${opts.syncExtra ? ', ' + opts.syncExtra : ''} }`,
      `run_dir: ${JSON.stringify(opts.workDir)}`,
      `log_dir: ${JSON.stringify(opts.workDir)}`,
    ].join('\n'),
    `${opts.workDir}/${opts.name}.yml`,
  );
  await install(cfg, silentLogger);
  await addTriggersForSyncs(cfg, silentLogger);
  return cfg;
}
