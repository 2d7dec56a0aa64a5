import type { z } from 'zod';
import type { configSchema } from './schema.js';

// The one typed config, resolved once from file, environment and defaults.
// Its shape is inferred from the schema (schema.ts), which is also what
// validates the file and fills in its defaults; these are names for its parts.

export type { HandlerRef } from './schema.js';

export type Config = z.output<ReturnType<typeof configSchema>>;
export type SyncConfig = Config['syncs'][string];
export type TableSelection = SyncConfig['tables'];
export type ConflictSpec = SyncConfig['conflict'];
/** A strategy name, an ordered list of database names (the first that changed the key wins), or a handler. */
export type ConflictRule = ConflictSpec['default'];
export type ConflictStrategy = Extract<ConflictRule, string>;
export type CopyData = SyncConfig['copyData'];
export type KickSpec = SyncConfig['kick'];
export type LogLevel = Config['logLevel'];

export function pidfilePath(cfg: Config): string {
  return `${cfg.runDir}/capra-${cfg.name}.pid`;
}

export function logfilePath(cfg: Config): string {
  return `${cfg.logDir}/capra-${cfg.name}.log`;
}
export type CopyIndexes = SyncConfig['copyIndexes'];
