import { stringify } from 'yaml';
import { z } from 'zod';
import { CapraError } from '../util/errors.js';
import { formatKeyPath, parseKeyPath } from './key-path.js';
import { maskPassword, maskPasswords } from './mask.js';
import { configSchema } from './schema.js';
import { isObj, recordAt } from './schema-kit.js';
import type { Config } from './types.js';

// `capra config get`: the resolved config in the file's own shape, written
// back by the config schema, and one setting of it by KEY.

/** The schema a loaded config was read with. */
function schemaOf(cfg: Config) {
  return configSchema({ file: cfg.file, dbs: Object.keys(cfg.databases), runDir: cfg.runDir, logDir: cfg.logDir });
}

/**
 * The resolved config in the config file's own shape (snake_case keys,
 * defaults filled in, kick and conflict in their long form), with passwords
 * masked unless `mask` is false. It is itself a valid config file.
 */
export function resolvedView(cfg: Config, mask = true): Record<string, unknown> {
  const view = z.encode(schemaOf(cfg), cfg) as Record<string, unknown>;
  if (!mask) return view;
  return {
    ...view,
    metadata: maskPassword(cfg.metadata),
    databases: Object.fromEntries(Object.entries(cfg.databases).map(([db, u]) => [db, maskPassword(u)])),
  };
}

/** A refused KEY: "config FILE: KEY: why", passwords masked. */
export function settingError(file: string, key: string, why: string): never {
  throw new CapraError(maskPasswords(`config ${file}: ${key}: ${why}`));
}

/** The value at `key` in the resolved view (defaults included, passwords masked). */
export function getSetting(cfg: Config, key: string): unknown {
  const path = parseKeyPath(key);
  let v: unknown = resolvedView(cfg);
  for (const [i, part] of path.entries()) {
    const parent = formatKeyPath(path.slice(0, i));
    if (typeof part === 'number') {
      if (!Array.isArray(v)) settingError(cfg.file, key, `${parent} is not a list`);
      if (part >= v.length) settingError(cfg.file, key, `${parent} has ${v.length} item(s), no [${part}]`);
      v = v[part];
    } else if (isObj(v)) {
      if (!Object.hasOwn(v, part)) {
        const keys = Object.keys(v);
        if (recordAt(schemaOf(cfg), path.slice(0, i))) {
          settingError(cfg.file, key, `no entry ${part} in ${parent} (${keys.length ? `it has: ${keys.join(', ')}` : 'it is empty'})`);
        }
        settingError(cfg.file, key, `unknown key (expected one of: ${keys.join(', ')})`);
      }
      v = v[part];
    } else {
      settingError(cfg.file, key, `unknown key (${parent} is a single value, not a map)`);
    }
  }
  return v;
}

/** A value as one line of YAML: a scalar, or a flow list/map. */
export function formatValue(v: unknown): string {
  return stringify(v, { collectionStyle: 'flow', flowCollectionPadding: false, lineWidth: 0 }).trimEnd();
}
