import type { Config } from '../config/types.js';
import { usedDatabases } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { isConnectionError } from '../db/errors.js';
import { databaseOf } from '../util/url.js';
import { installSide, sideInstalled, uninstallSide } from '../db/schema-side.js';
import { dropTriggers } from '../triggers/sync-triggers.js';
import { forgetJob, registerJob } from '../triggers/consumers.js';
import type { Logger } from '../util/logger.js';
import { dropDatabase, ensureDatabase } from './database.js';
import { publishConfig } from './meta-config.js';

const CREATED_DB = 'install.created_database';

/** The databases to try when the maintenance database is not reachable: the job's own. */
function fallbacks(cfg: Config): string[] {
  return Object.values(cfg.databases).map(databaseOf);
}

/**
 * `capra install`: the metadata database (created when missing) with the
 * control side, and the capture side on every database of the job.
 * Repeating it is harmless; two at once serialise on an advisory lock.
 */
export async function install(cfg: Config, logger: Logger): Promise<void> {
  // The default metadata database lives on the first database's server: name that database, as the config does.
  const where = cfg.metadataIsDefault ? `the default, on the server of database ${Object.keys(cfg.databases)[0]}` : undefined;
  const created = await ensureDatabase(cfg.metadata, fallbacks(cfg), where);
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    await conns.with(Connections.META, async (c) => {
      await installSide(c, 'meta', logger);
      if (created) {
        await c.query(`INSERT INTO repl.setting (key, value) VALUES ($1, 'true') ON CONFLICT (key) DO NOTHING`, [CREATED_DB]);
      }
      await publishConfig(c, cfg);
    });
    logger.info({ node: 'metadata', created }, 'metadata database ready');
    for (const db of usedDatabases(cfg)) {
      await conns.with(db, async (c) => {
        await installSide(c, 'node', logger);
        await registerJob(c, cfg.name);
      });
      logger.info({ node: db }, 'node ready');
    }
  } finally {
    await conns.close();
  }
}

/**
 * `capra uninstall`: triggers and registrations of this job on every node; a
 * node's repl objects go once no other job uses them; the metadata database
 * is dropped when install created it, else only its repl objects.
 */
export async function uninstall(cfg: Config, logger: Logger): Promise<void> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    for (const sync of Object.values(cfg.syncs)) await dropTriggers(cfg, sync, conns, logger);
    for (const db of usedDatabases(cfg)) {
      await conns.with(db, async (c) => {
        if (!(await sideInstalled(c, 'node'))) return;
        const stillUsed = await forgetJob(c, cfg.name);
        if (stillUsed) logger.info({ node: db }, 'node kept: another job still uses it');
        else await uninstallSide(c, 'node', logger);
      });
    }
    let dropDb = false;
    try {
      dropDb = await conns.with(Connections.META, async (c) => {
        if (!(await sideInstalled(c, 'meta'))) return false;
        const r = await c.query('SELECT value FROM repl.setting WHERE key = $1', [CREATED_DB]);
        if (r.rows.length > 0) return true;
        await uninstallSide(c, 'meta', logger);
        return false;
      });
    } catch (err) {
      // Nothing to remove when the metadata database is already gone.
      if (!isConnectionError(err) && !/does not exist/.test(String(err))) throw err;
    }
    await conns.close();
    if (dropDb) await dropDatabase(cfg.metadata, fallbacks(cfg));
  } finally {
    await conns.close();
  }
}
