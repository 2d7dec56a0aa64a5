import { CapraError } from '../util/errors.js';
import { SIZE_EXAMPLE, parseSize } from '../util/size.js';
import { type CloneOptions, splitList } from './clone-command.js';

// Each command's options, in one table: the parser accepts a command's own
// options and the global ones, nothing else, and the help is written from the
// same table, so what --help lists is what is accepted.

/** What the command line asked for, each option already checked and converted. */
export interface Args {
  config: string;
  verbose: boolean;
  /** --help, or `capra help [COMMAND]`: print the usage (of `command`, when set) and exit 0. */
  help: boolean;
  /** Undefined when none was given (the usage is printed, exit 2). */
  command?: CommandName;
  /** The words after the command (config's `get KEY`, `set KEY VALUE`; help's COMMAND). */
  operands: string[];
  json: boolean;
  foreground: boolean;
  syncs: string[];
  /** --metrics-port N: serve Prometheus metrics (start, restart). */
  metricsPort?: number;
  /** capra conflicts --limit N. */
  limit: number;
  /** capra status --max-lag SECONDS: unhealthy when a lane lags more. */
  maxLag?: number;
  /** capra clone's options. */
  clone: Omit<CloneOptions, 'sync'>;
  /** capra validate --fix: repair what it can. */
  fix?: boolean;
  /** capra kick --wait [SECONDS]: wait at most this long for every lane to catch up with the kick. */
  kickWait?: number;
  /** capra compare / repair --tables: these tables only. */
  compareTables?: string[];
  /** capra compare --nodes: these databases only. */
  compareNodes?: string[];
  /** capra repair --dry-run: say what would be done, change nothing. */
  dryRun?: boolean;
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** May be given more than once (each value is kept). */
  multiple?: boolean;
  /** The value's name in the help: N, NAME, SECONDS. */
  arg?: string;
  /** A flag that may take a value (`--wait`, `--wait 30`, `--wait=30`): the next word is its value when it is a number. */
  optionalValue?: boolean;
  help: string;
  /** Records the option in `a`; a string option gets its value, a flag gets true. */
  set(a: Args, value: string, flag: string): void;
}

export interface CommandSpec {
  /** What follows the command in its synopsis besides the options (config's `get [KEY] | set KEY VALUE`). */
  operands?: string;
  /** What the command does, one or more lines of the help. */
  about: string[];
  options: Record<string, OptionSpec>;
}

/** The defaults of everything an option can set. */
export function defaultArgs(env: NodeJS.ProcessEnv): Args {
  return {
    config: env.CAPRA_CONFIG ?? 'capra.yml',
    verbose: false,
    help: false,
    operands: [],
    json: false,
    foreground: false,
    syncs: [],
    limit: 20,
    clone: { onlyEmpty: false, dropIndexes: false, wait: false, list: false },
  };
}

function number(flag: string, value: string, expected: string, ok: (n: number) => boolean): number {
  const n = Number(value);
  if (value.trim() === '' || !ok(n)) throw new CapraError(`option ${flag}: expected ${expected}, got ${JSON.stringify(value)}`);
  return n;
}
const cloneId = (flag: string, value: string): number => number(flag, value, 'a clone id', (n) => Number.isSafeInteger(n) && n > 0);

/** A flag: `set` records it. */
function flag(help: string, set: (a: Args) => void): OptionSpec {
  return { type: 'boolean', help, set };
}

/** An option with a value called `arg` in the help. */
function valued(arg: string, help: string, set: OptionSpec['set']): OptionSpec {
  return { type: 'string', arg, help, set };
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  config: {
    type: 'string',
    short: 'c',
    arg: 'FILE',
    help: "the job's config file (default ./capra.yml, or $CAPRA_CONFIG)",
    set: (a, v) => {
      a.config = v;
    },
  },
  verbose: {
    ...flag('log at debug level; a failure also prints its stack trace', (a) => {
      a.verbose = true;
    }),
    short: 'v',
  },
  help: {
    ...flag('print this help', (a) => {
      a.help = true;
    }),
    short: 'h',
  },
};

const json = flag('print JSON', (a) => {
  a.json = true;
});
const syncs = (what: string): OptionSpec => ({
  type: 'string',
  multiple: true,
  arg: 'NAME',
  help: `${what} (again for more; all syncs without it)`,
  set: (a, v) => void a.syncs.push(v),
});
const metricsPort: OptionSpec = {
  type: 'string',
  arg: 'N',
  help: 'also serve Prometheus metrics on 127.0.0.1:N/metrics',
  set: (a, v, flag) => {
    a.metricsPort = number(flag, v, 'a port number', (n) => Number.isInteger(n) && n >= 0 && n <= 65535);
  },
};

const compareTables: OptionSpec = {
  type: 'string',
  multiple: true,
  arg: 'T,...',
  help: 'only these tables (table or schema.table; again for more)',
  set: (a, v) => {
    a.compareTables = [...(a.compareTables ?? []), ...splitList(v)];
  },
};

export const COMMANDS = {
  install: { about: ['create the metadata database and the repl schema on every database'], options: {} },
  uninstall: { about: ["remove what install created (and this job's triggers)"], options: {} },
  'add-triggers': { about: ["register the syncs' tables and put capture triggers on"], options: { sync: syncs('only this sync') } },
  'drop-triggers': { about: ['take the capture triggers off'], options: { sync: syncs('only this sync') } },
  start: {
    about: ['run the daemon detached (pidfile and log named after the job)'],
    options: {
      foreground: flag('run the daemon in this process (systemd, containers)', (a) => {
        a.foreground = true;
      }),
      'metrics-port': metricsPort,
    },
  },
  stop: { about: ['stop the daemon gracefully (it finishes the runs in progress)'], options: {} },
  restart: { about: ['stop, then start (detached)'], options: { 'metrics-port': metricsPort } },
  reload: { about: ['the daemon re-reads the config file and table definitions, without losing work'], options: {} },
  status: {
    about: [
      'daemon and per-sync state, pending rows, lag; exits 1 when unhealthy',
      '(a lane failing, a node not answering, or, with --max-lag, a lane lagging more)',
    ],
    options: {
      json,
      'max-lag': {
        type: 'string',
        arg: 'SECONDS',
        help: 'also unhealthy when a lane lags more than this',
        set: (a, v, flag) => {
          a.maxLag = number(flag, v, 'a number of seconds', (n) => Number.isFinite(n) && n >= 0);
        },
      },
    },
  },
  config: {
    operands: 'get [KEY] | set KEY VALUE',
    about: [
      'get: print a setting as resolved (defaults filled in, passwords masked); all without KEY',
      'set: change a setting in the config file, validated first; capra reload applies it',
      'KEY: a dotted path (syncs.shop.kick); quote a part holding dots: tables.keys."public.t"',
      'VALUE: YAML (5000, [b, a], "5000"); text that is not YAML is a string (*/5 * * * * *); taken as it is, even -3',
    ],
    options: { json },
  },
  conflicts: {
    about: ["the latest conflicts of multi-master syncs (newest first): each node's version, the rule, the decision"],
    options: {
      sync: syncs('only conflicts of this sync'),
      limit: valued('N', 'show the latest N (default 20)', (a, v, flag) => {
        a.limit = number(flag, v, 'a positive whole number', (n) => Number.isSafeInteger(n) && n > 0);
      }),
      json,
    },
  },
  clone: {
    about: ['queue a one-time copy of tables (as SELECT repl.clone(...) does), or act on clones already queued'],
    options: {
      // One sync per clone: given twice it is refused (a clone per sync), not merged.
      sync: { type: 'string', multiple: true, arg: 'NAME', help: 'the sync whose tables to copy', set: (a, v) => void a.syncs.push(v) },
      tables: {
        type: 'string',
        multiple: true,
        arg: 'T,...',
        help: 'these tables (table or schema.table, SQL quoting; again for more)',
        set: (a, v) => {
          a.clone.tables = [...(a.clone.tables ?? []), ...splitList(v)];
        },
      },
      dbs: valued('a:source,b:target', "the databases to copy from (source) and to (target), instead of a sync's", (a, v) => {
        a.clone.dbs = v;
      }),
      relgroup: valued('NAME', 'the tables of this table group (groups.tables in the config), instead of --tables', (a, v) => {
        a.clone.relgroup = v;
      }),
      dbgroup: valued('NAME', 'the databases of this group (groups.databases): its first is the source, the rest targets', (a, v) => {
        a.clone.dbgroup = v;
      }),
      start: valued('INTERVAL', 'not before now() + INTERVAL (a PostgreSQL interval)', (a, v) => {
        a.clone.start = v;
      }),
      'only-empty': {
        type: 'boolean',
        help: 'skip targets whose table has rows',
        set: (a) => {
          a.clone.onlyEmpty = true;
        },
      },
      'drop-indexes': {
        type: 'boolean',
        help: 'large tables: drop the indexes during the copy, rebuild them after',
        set: (a) => {
          a.clone.dropIndexes = true;
        },
      },
      'drop-indexes-above': valued('SIZE', 'as --drop-indexes, only the indexes larger than SIZE (100MB, 1GB)', (a, v, flag) => {
        if (parseSize(v) === null) throw new CapraError(`option ${flag}: expected ${SIZE_EXAMPLE}, got ${JSON.stringify(v)}`);
        a.clone.dropIndexes = true;
        a.clone.dropIndexesAbove = v;
      }),
      wait: flag('show its progress until it ends; exit 1 when it failed or was cancelled', (a) => {
        a.clone.wait = true;
      }),
      watch: valued('ID', "show a queued or running clone's progress until it ends", (a, v, flag) => {
        a.clone.watch = cloneId(flag, v);
      }),
      cancel: valued('ID', 'cancel a clone (a running one rolls back the table it is copying)', (a, v, flag) => {
        a.clone.cancel = cloneId(flag, v);
      }),
      list: flag('the latest clones and their states', (a) => {
        a.clone.list = true;
      }),
    },
  },
  validate: {
    about: [
      "check every node of the syncs against what install and add-triggers made: capture triggers, capture functions' keys,",
      "migration levels, table shapes across nodes, orphaned consumers; report each lane's backlog; exits 1 on any problem",
    ],
    options: {
      sync: syncs('only this sync (orphaned consumers are looked for only without it)'),
      fix: flag('repair what it can (triggers, capture functions, orphaned consumers) and say what it did', (a) => {
        a.fix = true;
      }),
      json,
    },
  },
  kick: {
    about: [
      'run now (the active daemon, wherever it runs); with --wait, exit 0 once every lane has applied',
      'what its sources had committed at the kick, 1 naming what holds it up after SECONDS (default 60)',
    ],
    options: {
      sync: syncs('only this sync'),
      wait: {
        type: 'boolean',
        optionalValue: true,
        arg: 'SECONDS',
        help: 'wait until every lane has caught up with the kick, at most SECONDS (default 60)',
        set: (a, v, flag) => {
          a.kickWait = v === '' ? 60 : number(flag, v, 'a number of seconds', (n) => Number.isFinite(n) && n > 0);
        },
      },
      json: flag('print per lane what was waited for (source, target, snapshot, reached, seconds)', (a) => {
        a.json = true;
      }),
    },
  },
  pause: {
    about: ['stop applying (capture goes on); kept in the metadata database, so it outlasts restarts'],
    options: { sync: syncs('only this sync') },
  },
  resume: { about: ['apply a paused sync again: it catches up at once'], options: { sync: syncs('only this sync') } },
  compare: {
    about: [
      "compare the sync's tables across its databases (one-way: each target with the source; multi-master:",
      'each database with the first source), by hashed key ranges narrowed to keys; changes still in flight',
      'are not differences; exits 1 when any table differs',
    ],
    options: {
      sync: syncs('only this sync'),
      tables: compareTables,
      nodes: {
        type: 'string',
        multiple: true,
        arg: 'a,b',
        help: 'only these databases of the sync (again for more)',
        set: (a, v) => {
          a.compareNodes = [...(a.compareNodes ?? []), ...splitList(v)];
        },
      },
      json: flag('print per table and database the keys that differ, with both versions of each row', (a) => {
        a.json = true;
      }),
    },
  },
  repair: {
    about: [
      'compare, then make the databases agree key by key through the apply path (not captured back):',
      "one-way, the source's row or its absence wins; multi-master, the sync's conflict rule decides (logged)",
    ],
    options: {
      sync: syncs('only this sync'),
      tables: compareTables,
      'dry-run': flag('print what would be done, change nothing', (a) => {
        a.dryRun = true;
      }),
      json,
    },
  },
  demo: { about: ['two embedded PostgreSQL servers syncing both ways, a conflict settled'], options: {} },
  help: { operands: '[COMMAND]', about: ['this help, or what COMMAND does and its options'], options: {} },
} satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}
