import { CapraError } from '../db/errors.js';
import { type CloneOptions, splitList } from './clone-command.js';

export interface Args {
  config: string;
  verbose: boolean;
  json: boolean;
  foreground: boolean;
  syncs: string[];
  /** --metrics-port N: serve Prometheus metrics (start). */
  metricsPort?: number;
  help: boolean;
  positional: string[];
  /** capra conflicts --limit N. */
  limit: number;
  /** capra status --max-lag SECONDS: unhealthy when a lane lags more. */
  maxLag?: number;
  /** capra clone's options. */
  clone: Omit<CloneOptions, 'sync'>;
}

const valued = new Set(['--config', '-c', '--sync', '--metrics-port', '--limit', '--max-lag', '--tables', '--dbs', '--start', '--cancel', '--watch']);
const flags = new Set(['--verbose', '-v', '--json', '--foreground', '--help', '-h', '--only-empty', '--drop-indexes', '--wait', '--list']);

function cloneId(option: string, value: string): number {
  const id = Number(value);
  if (!Number.isSafeInteger(id) || id <= 0) throw new CapraError(`option ${option}: expected a clone id, got ${JSON.stringify(value)}`);
  return id;
}

/** `capra [--config FILE] [--verbose] <command> [options]`; options may come anywhere. */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Args {
  const a: Args = {
    config: env.CAPRA_CONFIG ?? 'capra.yml',
    verbose: false,
    json: false,
    foreground: false,
    syncs: [],
    help: false,
    positional: [],
    limit: 20,
    clone: { onlyEmpty: false, dropIndexes: false, wait: false, list: false },
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    // The VALUE of `config set KEY VALUE` is taken as it is, even "-3".
    if (a.positional.length === 3 && a.positional[0] === 'config' && a.positional[1] === 'set') {
      a.positional.push(arg);
      continue;
    }
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (valued.has(arg)) {
      value ??= argv[++i];
      if (value === undefined) throw new CapraError(`option ${arg} needs a value`);
      if (arg === '--sync') a.syncs.push(value);
      else if (arg === '--metrics-port') {
        const port = Number(value);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CapraError(`option --metrics-port: expected a port number, got ${JSON.stringify(value)}`);
        a.metricsPort = port;
      } else if (arg === '--limit') {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n <= 0) throw new CapraError(`option --limit: expected a positive whole number, got ${JSON.stringify(value)}`);
        a.limit = n;
      } else if (arg === '--max-lag') {
        const n = Number(value);
        if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new CapraError(`option --max-lag: expected a number of seconds, got ${JSON.stringify(value)}`);
        a.maxLag = n;
      } else if (arg === '--tables') a.clone.tables = [...(a.clone.tables ?? []), ...splitList(value)];
      else if (arg === '--dbs') a.clone.dbs = value;
      else if (arg === '--start') a.clone.start = value;
      else if (arg === '--cancel') a.clone.cancel = cloneId(arg, value);
      else if (arg === '--watch') a.clone.watch = cloneId(arg, value);
      else a.config = value;
    } else if (flags.has(arg)) {
      if (arg === '--verbose' || arg === '-v') a.verbose = true;
      else if (arg === '--json') a.json = true;
      else if (arg === '--foreground') a.foreground = true;
      else if (arg === '--only-empty') a.clone.onlyEmpty = true;
      else if (arg === '--drop-indexes') a.clone.dropIndexes = true;
      else if (arg === '--wait') a.clone.wait = true;
      else if (arg === '--list') a.clone.list = true;
      else a.help = true;
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new CapraError(`unknown option ${arg} (see capra --help)`);
    } else {
      a.positional.push(arg);
    }
  }
  return a;
}

export const USAGE = `usage: capra [--config FILE] [--verbose] <command> [options]

  install             create the metadata database and the repl schema on every database
  uninstall           remove what install created (and this job's triggers)
  add-triggers        register the syncs' tables and put capture triggers on [--sync NAME]
  drop-triggers       take the capture triggers off [--sync NAME]
  start               run the daemon detached (pidfile and log named after the job)
  start --foreground  run the daemon in this process (systemd, containers)
  start --metrics-port N   also serve Prometheus metrics on 127.0.0.1:N/metrics
  stop                stop the daemon gracefully (it finishes the runs in progress)
  restart             stop, then start
  reload              the daemon re-reads the config file and table definitions, without losing work
  status [--json] [--max-lag SECONDS]
                      daemon and per-sync state, pending rows, lag; exits 1 when unhealthy
                      (a lane failing, a node not answering, or, with --max-lag, a lane lagging more)
  config get [KEY]    print a setting as resolved (defaults filled in, passwords masked); all without KEY
  config set KEY VALUE
                      change a setting in the config file, validated first; capra reload applies it
                      KEY: a dotted path (syncs.shop.kick); quote a part holding dots: tables.keys."public.t"
                      VALUE: YAML (5000, [b, a], "5000"); text that is not YAML is a string (*/5 * * * * *)
  conflicts [--sync NAME] [--limit N] [--json]
                      the latest conflicts of multi-master syncs (newest first, 20 by default): each node's version, the rule, the decision
  clone [--sync NAME] [--tables T,...] [--dbs a:source,b:target] [--start INTERVAL] [--only-empty] [--drop-indexes] [--wait]
                      queue a one-time copy of tables (as SELECT repl.clone(...) does); --wait shows its progress
  clone --watch ID    show a queued or running clone's progress until it ends
  clone --cancel ID   cancel a clone (a running one rolls back the table it is copying)
  clone --list        the latest clones and their states
  demo                two embedded PostgreSQL servers syncing both ways, a conflict settled

FILE defaults to ./capra.yml (or $CAPRA_CONFIG).`;
