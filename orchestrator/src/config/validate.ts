import { CapraError } from '../util/errors.js';
import type { Config } from './types.js';
import { configSchema } from './schema.js';
import { rawGroups } from './groups.js';
import { firstProblem, isObj } from './schema-kit.js';

// Validation of the parsed YAML by the config schema. Every message names
// the offending key: "config FILE: KEY: what is wrong".

export interface Defaults {
  runDir: string;
  logDir: string;
}

class ConfigError extends CapraError {}

/** Settings the environment overrides: the variable, when set, stands for the file's value (and is checked as that key). */
export const envOverrides = { log_level: 'CAPRA_LOG_LEVEL', run_dir: 'CAPRA_RUN_DIR', log_dir: 'CAPRA_LOG_DIR' } as const;

export function validateConfig(raw: unknown, file: string, defaults: Defaults, env: NodeJS.ProcessEnv = process.env): Config {
  let input = raw;
  if (isObj(raw)) {
    input = { ...raw };
    for (const [key, name] of Object.entries(envOverrides)) if (env[name] !== undefined) (input as Record<string, unknown>)[key] = env[name];
  }
  const dbs = isObj(raw) && isObj(raw.databases) ? Object.keys(raw.databases) : [];
  const schema = configSchema({ file, dbs, groups: rawGroups(raw), ...defaults });
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const { key, message } = firstProblem(schema, r.error.issues);
  throw new ConfigError(`config ${file}: ${key}: ${message}`);
}
