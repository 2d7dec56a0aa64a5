import { dirname, isAbsolute, resolve } from 'node:path';
import cron from 'node-cron';
import { z } from 'zod';
import { LOG_LEVELS } from '../util/logger.js';
import { SIZE_EXAMPLE, parseSize } from '../util/size.js';
import { databaseOf, withDatabase } from '../util/url.js';
import { type RawGroups, expandRefs, groupRef, groupsSchema, members, selectorEntry, unknownGroup } from './groups.js';
import { byForm, expected, expecting, fixedKeys, isObj, list, orWhenUnset, says, settings, show, text } from './schema-kit.js';
import { tableOptionsMap } from './table-options.js';

// The config file's one description: its keys, what each may hold, its
// defaults, and the typed Config the code reads (types.ts names its parts).
// Keys are listed in the order the file documents them, which is the order
// `config get` prints them and unknown-key messages list them; the first
// problem found in that order is the one reported.

/** What a config's checks need beyond its own text. */
export interface SchemaContext {
  /** The config file: a handler module's path is relative to its directory. */
  file: string;
  /** The names under `databases`, which syncs and priority lists refer to. */
  dbs: readonly string[];
  /** Where pidfiles and logs go unless the file says otherwise. */
  runDir: string;
  logDir: string;
  /** The `groups` key as the file writes it, for a sync's `@group` references; none when left out. */
  groups?: RawGroups;
}

const strategies = ['source', 'target', 'skip', 'latest', 'abort', 'random'] as const;
const copyModes = ['always', 'never', 'empty'] as const;
const logLevels = LOG_LEVELS;
const everyFiveSeconds = '*/5 * * * * *';

/** A handler as code: an SQL function (schema.name, jsonb in and out) or a JavaScript module (absolute path; its default export). */
const handlerRef = z.union([z.strictObject({ sql: z.string() }), z.strictObject({ module: z.string() })]);
export type HandlerRef = z.output<typeof handlerRef>;

/** A handler as the config file writes it. */
export function handlerText(h: HandlerRef): string {
  return 'sql' in h ? `sql:${h.sql}` : h.module;
}

/** "sql:schema.function", or a path to a JavaScript module (relative to the config file's directory). */
function handler(ctx: SchemaContext) {
  const sqlName = /^[^.\s]+\.[^.\s]+$/;
  const valid = (s: string): boolean => (s.startsWith('sql:') ? sqlName.test(s.slice(4).trim()) : /\.(c|m)?js$/.test(s));
  const wanted = (s: unknown): string => `expected sql:schema.function${String(s).startsWith('sql:') ? '' : ' or a path to a .js/.mjs module'}, got ${show(s)}`;
  return z.codec(text.refine(valid, says(wanted)), handlerRef, {
    decode: (s): HandlerRef => (s.startsWith('sql:') ? { sql: s.slice(4).trim() } : { module: isAbsolute(s) ? s : resolve(dirname(ctx.file), s) }),
    encode: handlerText,
  });
}

function unknownDatabase(ctx: SchemaContext, d: unknown): string {
  return `unknown database ${show(d)} (databases: ${ctx.dbs.join(', ')})`;
}

/** The name of one of the job's databases. */
function database(ctx: SchemaContext) {
  return text.refine(
    (d) => ctx.dbs.includes(d),
    says((d) => unknownDatabase(ctx, d)),
  );
}

const postgresUrl = text.superRefine((s, payload) => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    payload.addIssue({ code: 'custom', message: 'expected a postgres:// URL', input: s });
    return;
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    payload.addIssue({ code: 'custom', message: `expected a postgres:// URL, got scheme ${u.protocol}`, input: s });
  else if (!databaseOf(s)) payload.addIssue({ code: 'custom', message: 'the URL names no database', input: s });
});

/**
 * How a sync settles a key changed on two sources: a strategy, an ordered
 * list of database names (the first that changed the key wins), or a handler.
 */
function conflictRule(ctx: SchemaContext) {
  const priority = z.array(database(ctx)).refine((l) => l.length > 0, 'a priority list needs at least one database');
  const handlerMap = fixedKeys({ handler: handler(ctx) }, expecting('a map'));
  const strategy = z.enum(
    strategies,
    says((v) =>
      v === 'handler'
        ? 'name the handler: { handler: sql:schema.function } or { handler: ./module.js }'
        : `expected one of ${strategies.join(', ')}, a list of databases or { handler: ... }, got ${show(v)}`,
    ),
  );
  return byForm(
    [priority, handlerMap, strategy],
    (v) => (Array.isArray(v) ? priority : isObj(v) && 'handler' in v ? handlerMap : strategy),
    (r) => (typeof r === 'object' && !Array.isArray(r) ? { handler: handlerText(r.handler) } : r),
  );
}

/** A sync's conflict rule, with per-table overrides by schema.table as written in the file. */
function conflictSpec(ctx: SchemaContext) {
  const rule = conflictRule(ctx);
  const spec = fixedKeys(
    {
      default: rule.default('latest'),
      tables: z.record(z.string(), rule, expected('a map of table to strategy')).default({}),
    },
    expecting('a map'),
  );
  const ruleOnly = rule.transform((r) => ({ default: r, tables: {} as Record<string, typeof r> }));
  return byForm(
    [ruleOnly, spec],
    (v) => (!isObj(v) || 'handler' in v ? ruleOnly : spec),
    (c) => ({ default: z.encode(rule, c.default), tables: Object.fromEntries(Object.entries(c.tables).map(([t, r]) => [t, z.encode(rule, r)])) }),
  ).default(() => ({ default: 'latest' as const, tables: {} }));
}

/** When a sync runs: on the capture trigger's notify, on a cron schedule (node-cron, with seconds), or both. */
const kick = (() => {
  const cronText = text.refine(
    (s) => cron.validate(s),
    says((s) => `not a valid cron expression: ${show(s)}`),
  );
  const map = fixedKeys({ notify: z.boolean(expected('true or false')).optional(), cron: cronText.nullish() }, expecting('a map'))
    .refine((k) => k.notify !== false || (k.cron ?? null) !== null, 'with notify: false a cron expression is needed, or nothing would ever run')
    .transform((k) => ({ notify: k.notify !== false, cron: k.cron ?? null }));
  const word = z
    .custom<string>(
      (v) => v === 'notify' || v === 'both' || (typeof v === 'string' && cron.validate(v)),
      expected(`notify, both, or a cron expression such as "${everyFiveSeconds}"`),
    )
    .transform((w) => (w === 'notify' ? { notify: true, cron: null } : w === 'both' ? { notify: true, cron: everyFiveSeconds } : { notify: false, cron: w }));
  return byForm(
    [map, word],
    (v) => (isObj(v) ? map : word),
    (k) => k,
  ).default(() => ({ notify: true, cron: null }));
})();

/** Which tables a sync replicates: schemas, schema.table or @group; empty include means every table. */
const tableSelection = (groups: RawGroups) =>
  orWhenUnset(
    settings(
      {
        include: list(selectorEntry(groups)),
        exclude: list(selectorEntry(groups)),
        /** Tables without a primary key: schema.table -> name of a unique index on NOT NULL columns. */
        keys: z.record(z.string(), text, expected('a map of table to unique index name')).default({}),
        /** Per table: target name, column list, expressions, row filter, whole-row identity, fullcopy (table-options.ts). */
        options: tableOptionsMap,
      },
      expecting('a map with include/exclude'),
    ),
    () => ({ include: [], exclude: [], keys: {} }),
  );

/** A size in bytes, written as PostgreSQL's pg_size_bytes reads it (100MB, 1GB, 8kB, 0). */
const size = z.codec(
  z.custom<string | number>((v) => parseSize(v) !== null, expected(SIZE_EXAMPLE)),
  z.number(),
  { decode: (v) => parseSize(v)!, encode: (n) => n },
);

/**
 * The initial copy's index handling: the target's indexes larger than
 * drop_above that back no constraint are dropped for the copy and rebuilt
 * after it, in its transaction; per table (schema.table) another threshold.
 */
const copyIndexes = orWhenUnset(
  settings(
    {
      drop_above: orWhenUnset(size.nullable(), () => null),
      tables: z
        .record(z.string(), settings({ drop_above: size }, expecting('a map with drop_above')), expected('a map of table to { drop_above }'))
        .default({}),
    },
    expecting('a map with drop_above'),
  ),
  () => ({ dropAbove: null, tables: {} }),
);

/** capra compare on a schedule (a node-cron expression, with seconds); unset: never. */
const compareSchedule = orWhenUnset(
  text
    .refine(
      (s) => cron.validate(s),
      says((s) => `not a valid cron expression: ${show(s)}`),
    )
    .nullable(),
  () => null,
);

function sync(ctx: SchemaContext) {
  const groups = groupsOf(ctx);
  return settings(
    {
      sources: list(text),
      targets: list(text),
      tables: tableSelection(groups),
      conflict: conflictSpec(ctx),
      copy_data: z.enum(copyModes, expected(`one of ${copyModes.join(', ')}`)).default('empty'),
      /** Indexes dropped for the initial copy and rebuilt after it; unset: none. */
      copy_indexes: copyIndexes,
      kick,
      /** Also record applied changes as deltas for downstream jobs. */
      cascade: z.boolean(expected('true or false')).default(false),
      /** Called, in order, when applying fails; one that repairs the cause makes the run retry at once. */
      exception_handlers: list(handler(ctx)),
      /** When the daemon compares the sync's databases; the last result per table is kept in the metadata database. */
      compare: compareSchedule,
    },
    expecting('a map'),
    {
      reads: ['sources', 'targets'],
      check: (s, payload) => {
        // One check in this order, so that a list both naming an unknown
        // database and repeating one is reported by its first item.
        const problem = (path: (string | number)[], message: string): void => payload.addIssue({ code: 'custom', path, message, input: s });
        for (const role of ['sources', 'targets'] as const) {
          for (const [i, entry] of s[role].entries()) {
            const name = groupRef(entry);
            const unknown = name === null ? null : unknownGroup(groups, 'databases', name);
            if (unknown) return problem([role, i], unknown);
          }
        }
        const sources = expandRefs(groups, 'databases', s.sources);
        if (sources.length === 0) return problem(['sources'], 'a sync needs at least one source');
        if (sources.length + expandRefs(groups, 'databases', s.targets).length < 2) return problem(['targets'], 'a sync needs at least two databases in all');
        const seen = new Set<string>();
        for (const [role, dbs] of [
          ['sources', s.sources],
          ['targets', s.targets],
        ] as const) {
          for (const [i, entry] of dbs.entries()) {
            // A database group stands for its members, each checked as if listed here.
            const name = groupRef(entry);
            const via = name === null ? '' : ` (through group @${name})`;
            for (const d of name === null ? [entry] : members(groups, 'databases', name)) {
              if (!ctx.dbs.includes(d)) return problem([role, i], unknownDatabase(ctx, d));
              if (seen.has(d)) return problem([role, i], `database ${d} is listed twice${via}`);
              seen.add(d);
            }
          }
        }
        // Shapes are one-way: multi-master compares and writes back the same rows on every node.
        if (sources.length > 1) {
          const shaped = Object.keys(isObj(s.tables) ? (s.tables.options ?? {}) : {});
          if (shaped.length > 0)
            return problem(
              ['tables', 'options', shaped[0]!],
              'per-table options (target, columns, expressions, where, identity, fullcopy) need a one-way sync (one source); a multi-master sync replicates tables as they are',
            );
        }
      },
    },
  );
}

const groupsOf = (ctx: SchemaContext): RawGroups => ctx.groups ?? { tables: {}, databases: {} };

/** A sync as the code reads it: each `@group` replaced by the group's members. */
function expandGroups<S extends { sources: string[]; targets: string[]; tables: { include: string[]; exclude: string[] } }>(groups: RawGroups, s: S): S {
  const dbs = (l: string[]): string[] => expandRefs(groups, 'databases', l);
  const tables = (l: string[]): string[] => expandRefs(groups, 'tables', l);
  return {
    ...s,
    sources: dbs(s.sources),
    targets: dbs(s.targets),
    tables: { ...s.tables, include: tables(s.tables.include), exclude: tables(s.tables.exclude) },
  };
}

/** The syncs by name; each knows its own name. */
function syncs(ctx: SchemaContext) {
  const name = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'a sync name is a letter followed by letters, digits, _ or -');
  const bySyncName = z.record(
    name,
    sync(ctx),
    says(() => 'expected a map of sync name to sync'),
  );
  type Sync = z.output<ReturnType<typeof sync>> & { name: string };
  return z.codec(bySyncName, z.custom<Record<string, Sync>>(), {
    decode: (m) => Object.fromEntries(Object.entries(m).map(([n, s]) => [n, { name: n, ...expandGroups(groupsOf(ctx), s) }])),
    encode: (m) => m,
  });
}

const positiveWhole = z.number(expected('a positive whole number')).refine((n) => Number.isInteger(n) && n > 0, expected('a positive whole number'));
const positiveSeconds = z.number(expected('a positive number of seconds')).refine((n) => Number.isFinite(n) && n > 0, expected('a positive number of seconds'));

/** The whole file; parsing it yields the Config, encoding a Config gives the file back with every default written out. */
export function configSchema(ctx: SchemaContext) {
  const file = settings(
    {
      /** The job's name: unique per host; names the pidfile, the log and the default metadata database. */
      name: text.regex(
        /^[a-z][a-z0-9_]{0,39}$/,
        says((n) => `${show(n)} is not a job name: use lowercase letters, digits and _ (at most 40), starting with a letter`),
      ),
      /** Left out: a database capra_<name> on the first database's server, which install creates and uninstall drops. */
      metadata: postgresUrl.optional(),
      databases: z
        .record(
          z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'a database name is letters, digits and _'),
          postgresUrl,
          says(() => 'expected a map of database name to postgres:// URL'),
        )
        .refine((m) => Object.keys(m).length > 0, 'expected a map of database name to postgres:// URL'),
      /** Named lists of tables and of databases, for syncs (`@name`) and clones (relgroup, dbgroup). */
      groups: groupsSchema(database(ctx)),
      syncs: syncs(ctx),
      run_dir: text.default(ctx.runDir),
      log_dir: text.default(ctx.logDir),
      log_level: orWhenUnset(z.enum(logLevels, expected(`one of ${logLevels.join(', ')}`)), () => 'info' as const),
      /** Upper bound on deltas per batch; one source transaction is never split. */
      batch_rows: positiveWhole.default(10_000),
      /** Seconds between safety-net checks for work when no kick arrives. */
      poll_seconds: positiveWhole.default(30),
      /**
       * Seconds a node may leave a connect or a waiting query unanswered before
       * it counts as hung: its connections are ended and it is left out until it
       * answers again (a long statement is not cut while the node answers).
       */
      node_timeout_seconds: positiveSeconds.default(30),
    },
    () => 'expected a map of settings',
  );
  type File = z.output<typeof file>;
  type Resolved = File & {
    metadata: string;
    /** Path of the file this came from (for messages and the daemon's re-reads). */
    file: string;
    /** True when metadata is the default capra_<name> database that install creates and uninstall drops. */
    metadataIsDefault: boolean;
  };
  return z.codec(file, z.custom<Resolved>(), {
    decode: ({ name, metadata, ...c }): Resolved => ({
      file: ctx.file,
      name,
      metadata: metadata ?? withDatabase(Object.values(c.databases)[0]!, `capra_${name}`),
      metadataIsDefault: metadata === undefined,
      ...c,
    }),
    encode: (c) => c,
  });
}
