// The one typed config, resolved once from file, environment and defaults.

export type ConflictStrategy = 'source' | 'target' | 'skip' | 'latest' | 'abort' | 'random';

/**
 * User code: an SQL function (schema.name, taking and returning jsonb) or a
 * JavaScript module (absolute path; its default export is the function).
 */
export type HandlerRef = { sql: string } | { module: string };

/** A strategy name, an ordered list of database names (the first that changed the key wins), or a handler. */
export type ConflictRule = ConflictStrategy | string[] | { handler: HandlerRef };

export interface ConflictSpec {
  default: ConflictRule;
  /** Per-table overrides, by schema.table as written in the config. */
  tables: Record<string, ConflictRule>;
}

export type CopyData = 'always' | 'never' | 'empty';

export interface KickSpec {
  notify: boolean;
  /** node-cron expression for polling, or null. */
  cron: string | null;
}

export interface TableSelection {
  include: string[];
  exclude: string[];
  /** Tables without a primary key: schema.table -> name of a unique index on NOT NULL columns. */
  keys: Record<string, string>;
}

export interface SyncConfig {
  name: string;
  sources: string[];
  targets: string[];
  tables: TableSelection;
  conflict: ConflictSpec;
  copyData: CopyData;
  kick: KickSpec;
  cascade: boolean;
  /** Called, in order, when applying fails; one that repairs the cause makes the run retry at once. */
  exceptionHandlers: HandlerRef[];
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Config {
  /** Path of the file this came from (for messages and the daemon's re-reads). */
  file: string;
  name: string;
  metadata: string;
  /** True when metadata is the default capra_<name> database that install creates and uninstall drops. */
  metadataIsDefault: boolean;
  databases: Record<string, string>;
  syncs: Record<string, SyncConfig>;
  runDir: string;
  logDir: string;
  logLevel: LogLevel;
  /** Upper bound on deltas per batch; one source transaction is never split. */
  batchRows: number;
  /** Seconds between safety-net checks for work when no kick arrives. */
  pollSeconds: number;
  /**
   * Seconds a node may leave a connect or a waiting query unanswered before
   * it counts as hung: its connections are ended and it is left out until it
   * answers again (a long statement is not cut while the node answers).
   */
  nodeTimeoutSeconds: number;
}

export function pidfilePath(cfg: Config): string {
  return `${cfg.runDir}/capra-${cfg.name}.pid`;
}

export function logfilePath(cfg: Config): string {
  return `${cfg.logDir}/capra-${cfg.name}.log`;
}
