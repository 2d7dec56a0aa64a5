import cron from 'node-cron';
import { CapraError } from '../db/errors.js';
import { databaseOf, withDatabase } from '../db/url.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { ConflictRule, ConflictSpec, ConflictStrategy, Config, CopyData, HandlerRef, KickSpec, LogLevel, SyncConfig, TableSelection } from './types.js';

// Validation of the parsed YAML. Every message names the offending key.

const strategies: readonly ConflictStrategy[] = ['source', 'target', 'skip', 'latest', 'abort', 'random'];
const copyModes: readonly CopyData[] = ['always', 'never', 'empty'];
const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const topKeys = ['name', 'metadata', 'databases', 'syncs', 'run_dir', 'log_dir', 'log_level', 'batch_rows', 'poll_seconds', 'node_timeout_seconds'];
const syncKeys = ['sources', 'targets', 'tables', 'conflict', 'copy_data', 'kick', 'cascade', 'exception_handlers'];
const tableKeys = ['include', 'exclude', 'keys'];

export interface Defaults {
  runDir: string;
  logDir: string;
}

class ConfigError extends CapraError {}

function fail(file: string, key: string, what: string): never {
  throw new ConfigError(`config ${file}: ${key}: ${what}`);
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(file: string, where: string, obj: Obj, allowed: string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      fail(file, where ? `${where}.${k}` : k, `unknown key (expected one of: ${allowed.join(', ')})`);
    }
  }
}

function str(file: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || v.trim() === '') fail(file, key, `expected a non-empty string, got ${show(v)}`);
  return v;
}

function strList(file: string, key: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(file, key, `expected a list, got ${show(v)}`);
  return v.map((item, i) => str(file, `${key}[${i}]`, item));
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}

function posInt(file: string, key: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(file, key, `expected a positive whole number, got ${show(v)}`);
  return v;
}

function posNumber(file: string, key: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(file, key, `expected a positive number of seconds, got ${show(v)}`);
  return v;
}

/**
 * "sql:schema.function" or a path to a JavaScript module (relative to the
 * config file's directory).
 */
function handlerRef(file: string, key: string, v: unknown): HandlerRef {
  const s = str(file, key, v);
  if (s.startsWith('sql:')) {
    const fn = s.slice(4).trim();
    if (!/^[^.\s]+\.[^.\s]+$/.test(fn)) fail(file, key, `expected sql:schema.function, got ${show(s)}`);
    return { sql: fn };
  }
  if (!/\.(c|m)?js$/.test(s)) fail(file, key, `expected sql:schema.function or a path to a .js/.mjs module, got ${show(s)}`);
  return { module: isAbsolute(s) ? s : resolve(dirname(file), s) };
}

function conflictValue(file: string, key: string, v: unknown, dbs: string[]): ConflictRule {
  if (Array.isArray(v)) {
    const list = strList(file, key, v);
    if (list.length === 0) fail(file, key, 'a priority list needs at least one database');
    for (const [i, d] of list.entries()) {
      if (!dbs.includes(d)) fail(file, `${key}[${i}]`, `unknown database ${show(d)} (databases: ${dbs.join(', ')})`);
    }
    return list;
  }
  if (isObj(v) && 'handler' in v) {
    checkKeys(file, key, v, ['handler']);
    return { handler: handlerRef(file, `${key}.handler`, v.handler) };
  }
  if (v === 'handler') fail(file, key, 'name the handler: { handler: sql:schema.function } or { handler: ./module.js }');
  if (typeof v !== 'string' || !(strategies as readonly string[]).includes(v)) {
    fail(file, key, `expected one of ${strategies.join(', ')}, a list of databases or { handler: ... }, got ${show(v)}`);
  }
  return v as ConflictStrategy;
}

function conflict(file: string, key: string, v: unknown, dbs: string[]): ConflictSpec {
  if (v === undefined) return { default: 'latest', tables: {} };
  if (!isObj(v) || 'handler' in v) return { default: conflictValue(file, key, v, dbs), tables: {} };
  checkKeys(file, key, v, ['default', 'tables']);
  const tables: ConflictSpec['tables'] = {};
  if (v.tables !== undefined) {
    if (!isObj(v.tables)) fail(file, `${key}.tables`, `expected a map of table to strategy, got ${show(v.tables)}`);
    for (const [t, s] of Object.entries(v.tables)) tables[t] = conflictValue(file, `${key}.tables.${t}`, s, dbs);
  }
  return { default: v.default === undefined ? 'latest' : conflictValue(file, `${key}.default`, v.default, dbs), tables };
}

function kick(file: string, key: string, v: unknown): KickSpec {
  if (v === undefined || v === 'notify') return { notify: true, cron: null };
  if (v === 'both') return { notify: true, cron: '*/5 * * * * *' };
  if (isObj(v)) {
    checkKeys(file, key, v, ['notify', 'cron']);
    if (v.notify !== undefined && typeof v.notify !== 'boolean') fail(file, `${key}.notify`, `expected true or false, got ${show(v.notify)}`);
    const expr = v.cron === undefined || v.cron === null ? null : str(file, `${key}.cron`, v.cron);
    if (expr !== null && !cron.validate(expr)) fail(file, `${key}.cron`, `not a valid cron expression: ${show(expr)}`);
    const notify = v.notify !== false;
    if (!notify && expr === null) fail(file, key, 'with notify: false a cron expression is needed, or nothing would ever run');
    return { notify, cron: expr };
  }
  if (typeof v === 'string' && cron.validate(v)) return { notify: false, cron: v };
  fail(file, key, `expected notify, both, or a cron expression such as "*/5 * * * * *", got ${show(v)}`);
}

function tables(file: string, key: string, v: unknown): TableSelection {
  if (v === undefined || v === null) return { include: [], exclude: [], keys: {} };
  if (!isObj(v)) fail(file, key, `expected a map with include/exclude, got ${show(v)}`);
  checkKeys(file, key, v, tableKeys);
  const keys: Record<string, string> = {};
  if (v.keys !== undefined) {
    if (!isObj(v.keys)) fail(file, `${key}.keys`, `expected a map of table to unique index name, got ${show(v.keys)}`);
    for (const [t, idx] of Object.entries(v.keys)) keys[t] = str(file, `${key}.keys.${t}`, idx);
  }
  return { include: strList(file, `${key}.include`, v.include), exclude: strList(file, `${key}.exclude`, v.exclude), keys };
}

function sync(file: string, name: string, v: unknown, dbs: string[]): SyncConfig {
  const key = `syncs.${name}`;
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(name)) fail(file, key, 'a sync name is a letter followed by letters, digits, _ or -');
  if (!isObj(v)) fail(file, key, `expected a map, got ${show(v)}`);
  checkKeys(file, key, v, syncKeys);
  const sources = strList(file, `${key}.sources`, v.sources);
  const targets = strList(file, `${key}.targets`, v.targets);
  if (sources.length === 0) fail(file, `${key}.sources`, 'a sync needs at least one source');
  if (sources.length + targets.length < 2) fail(file, `${key}.targets`, 'a sync needs at least two databases in all');
  const seen = new Set<string>();
  for (const [role, list] of [['sources', sources], ['targets', targets]] as const) {
    for (const [i, d] of list.entries()) {
      if (!dbs.includes(d)) fail(file, `${key}.${role}[${i}]`, `unknown database ${show(d)} (databases: ${dbs.join(', ')})`);
      if (seen.has(d)) fail(file, `${key}.${role}[${i}]`, `database ${d} is listed twice`);
      seen.add(d);
    }
  }
  const copyData = v.copy_data === undefined ? 'empty' : v.copy_data;
  if (typeof copyData !== 'string' || !(copyModes as readonly string[]).includes(copyData)) {
    fail(file, `${key}.copy_data`, `expected one of ${copyModes.join(', ')}, got ${show(v.copy_data)}`);
  }
  if (v.cascade !== undefined && typeof v.cascade !== 'boolean') fail(file, `${key}.cascade`, `expected true or false, got ${show(v.cascade)}`);
  return {
    name,
    sources,
    targets,
    tables: tables(file, `${key}.tables`, v.tables),
    conflict: conflict(file, `${key}.conflict`, v.conflict, dbs),
    copyData: copyData as CopyData,
    kick: kick(file, `${key}.kick`, v.kick),
    cascade: v.cascade === true,
    exceptionHandlers: strList(file, `${key}.exception_handlers`, v.exception_handlers).map((h, i) => handlerRef(file, `${key}.exception_handlers[${i}]`, h)),
  };
}

function dbUrl(file: string, key: string, v: unknown): string {
  const s = str(file, key, v);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    fail(file, key, 'expected a postgres:// URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') fail(file, key, `expected a postgres:// URL, got scheme ${u.protocol}`);
  if (!databaseOf(s)) fail(file, key, 'the URL names no database');
  return s;
}

export function validateConfig(raw: unknown, file: string, defaults: Defaults, env: NodeJS.ProcessEnv = process.env): Config {
  if (!isObj(raw)) fail(file, '(top level)', 'expected a map of settings');
  checkKeys(file, '', raw, topKeys);
  const name = str(file, 'name', raw.name);
  if (!/^[a-z][a-z0-9_]{0,39}$/.test(name)) {
    fail(file, 'name', `${show(name)} is not a job name: use lowercase letters, digits and _ (at most 40), starting with a letter`);
  }
  if (!isObj(raw.databases) || Object.keys(raw.databases).length === 0) fail(file, 'databases', 'expected a map of database name to postgres:// URL');
  const databases: Record<string, string> = {};
  for (const [db, url] of Object.entries(raw.databases)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(db)) fail(file, `databases.${db}`, 'a database name is letters, digits and _');
    databases[db] = dbUrl(file, `databases.${db}`, url);
  }
  const dbNames = Object.keys(databases);
  if (!isObj(raw.syncs)) fail(file, 'syncs', 'expected a map of sync name to sync');
  const syncs: Record<string, SyncConfig> = {};
  for (const [s, v] of Object.entries(raw.syncs)) syncs[s] = sync(file, s, v, dbNames);

  const metadataIsDefault = raw.metadata === undefined;
  const metadata = metadataIsDefault ? withDatabase(databases[dbNames[0]!]!, `capra_${name}`) : dbUrl(file, 'metadata', raw.metadata);
  const logLevel = (env.CAPRA_LOG_LEVEL ?? raw.log_level ?? 'info') as string;
  if (!(logLevels as readonly string[]).includes(logLevel)) fail(file, 'log_level', `expected one of ${logLevels.join(', ')}, got ${show(logLevel)}`);
  const dir = (key: string, envName: string, dflt: string): string => {
    const v = env[envName] ?? raw[key];
    return v === undefined ? dflt : str(file, key, v);
  };
  return {
    file,
    name,
    metadata,
    metadataIsDefault,
    databases,
    syncs,
    runDir: dir('run_dir', 'CAPRA_RUN_DIR', defaults.runDir),
    logDir: dir('log_dir', 'CAPRA_LOG_DIR', defaults.logDir),
    logLevel: logLevel as LogLevel,
    batchRows: posInt(file, 'batch_rows', raw.batch_rows, 10_000),
    pollSeconds: posInt(file, 'poll_seconds', raw.poll_seconds, 30),
    nodeTimeoutSeconds: posNumber(file, 'node_timeout_seconds', raw.node_timeout_seconds, 30),
  };
}
