// Drives Bucardo 5.6 (the Debian package: /usr/bin/bucardo, Bucardo.pm, and
// PL/Perl for PostgreSQL) so that the bench can measure it beside Capra on the
// same servers. Library code: it never prints; progress goes to an optional
// callback. Bucardo runs as child processes with argument arrays (no shell),
// with HOME, its PID files and its logs under the caller's work directory.
//
// Bucardo settings (bucardo.bucardo_config) changed from the 5.6 defaults, so
// that it reacts as fast as an operator tuning it for latency would make it
// (BUCARDO_SETTINGS; setUp's bucardoSettings overrides them):
//
//   mcp_loop_sleep, ctl_sleep, kid_sleep: 0.2 s, 0.2 s, 0.5 s -> 0.005 s.
//     A change travels by polling: the source's trigger NOTIFYs the MCP, which
//     polls its connections every mcp_loop_sleep and NOTIFYs the sync's
//     controller (CTL) through the control database; the CTL polls every
//     ctl_sleep and NOTIFYs the kid (KID), which polls every kid_sleep. The
//     defaults add up to 0.9 s before the kid starts; a single-row insert took
//     about 520 ms to arrive with them, 33 ms at 0.01 s, 24 ms at 0.005 s and
//     21 ms at 0.002 s (2 cores, busy). The idle loops of one sync's MCP, CTL
//     and KID then use about 4% of a core (0.3% at the defaults); they read
//     notifications already on their sockets, and the PostgreSQL servers do
//     no measurable extra work.
//   kid_nodeltarows_sleep: 0.5 s -> 0.005 s. A kid that was kicked but found
//     no delta rows (a kick for changes an earlier run already carried) sleeps
//     this long before it looks at the next kick.
//   kid_serial_sleep, kid_deadlock_sleep: 0.5 s -> 0.1 s. The backoff before a
//     kid retries a run that failed on a serialization error or a deadlock
//     (multi-master syncs with writers on the same rows); still a backoff.
//   ctl_checkonkids_time: 10 s -> 1 s. How often a controller checks that its
//     kid is alive (a file test and kill 0). A kid exits after a onetimecopy
//     run, and kicks go nowhere until the controller makes a new one.
//   log_level: normal -> terse. Normal writes several lines per sync run to the
//     log file; terse still logs errors, warnings, starts and stops.
//
// Left at their defaults: stayalive and kidsalive (a persistent controller and
// kid, already the fastest), autokick (the triggers NOTIFY), the repeatable
// read isolation of a kid's transactions, quick_delta_check (one cheap query
// tells which tables have deltas), statement_chunk_size (6,000 keys per
// statement), the VAC daemon that purges replicated delta rows every 30 s
// (without it the delta tables only grow), ctl_createkid_time (a 0.5 s pause
// of the controller after it makes a kid: start() waits it out), and the
// conflict strategy (bucardo_latest) of multi-master syncs.
//
// Also set: piddir, reason_file, warning_file and log_conflict_file, so that
// nothing goes to /var/run/bucardo or /var/log/bucardo.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { type Cluster, type ClusterLogger, startCluster } from '../orchestrator/src/embedded/cluster.js';

/** Optional progress callback; the library itself never prints. */
export type BucardoLog = (msg: string) => void;

/** The settings described at the top of this file. */
export const BUCARDO_SETTINGS: Readonly<Record<string, string>> = {
  mcp_loop_sleep: '0.005',
  ctl_sleep: '0.005',
  kid_sleep: '0.005',
  kid_nodeltarows_sleep: '0.005',
  kid_serial_sleep: '0.1',
  kid_deadlock_sleep: '0.1',
  ctl_checkonkids_time: '1',
  log_level: 'terse',
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Names Bucardo accepts for databases, dbgroups and syncs. */
const NAME = /^[a-zA-Z]\w*$/;
/** schema.table as Bucardo's `add table` and `remove table` parse them. */
const TABLE = /^([A-Za-z_]\w*)\.([A-Za-z_]\w*)$/;

/**
 * The bucardo program and a PostgreSQL bin directory whose server has PL/Perl
 * (Bucardo's control database needs plperlu), or why there are none.
 * BUCARDO_BIN and BUCARDO_PG_BIN override the search.
 */
export function findBucardo(): { bin: string; pgBin: string } | { missing: string } {
  const bin =
    process.env.BUCARDO_BIN ??
    [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/bin', '/usr/local/bin'].map((d) => path.join(d, 'bucardo')).find((f) => existsSync(f));
  if (!bin || !existsSync(bin)) return { missing: 'bucardo not found (apt-get install bucardo, or set BUCARDO_BIN)' };
  const withPlperl = (binDir: string): boolean => {
    const root = path.resolve(binDir, '..'); // /usr/lib/postgresql/N
    const major = path.basename(root);
    return (
      existsSync(path.join(binDir, 'postgres')) &&
      (existsSync(path.join(root, 'lib', 'plperl.so')) || existsSync(path.join(binDir, '..', 'lib', 'postgresql', 'plperl.so'))) &&
      (existsSync(path.join('/usr/share/postgresql', major, 'extension', 'plperlu.control')) ||
        existsSync(path.join(binDir, '..', 'share', 'postgresql', 'extension', 'plperlu.control')))
    );
  };
  if (process.env.BUCARDO_PG_BIN) {
    return withPlperl(process.env.BUCARDO_PG_BIN)
      ? { bin, pgBin: process.env.BUCARDO_PG_BIN }
      : { missing: `no PostgreSQL with PL/Perl in BUCARDO_PG_BIN=${process.env.BUCARDO_PG_BIN}` };
  }
  let versions: string[] = [];
  try {
    versions = readdirSync('/usr/lib/postgresql');
  } catch {
    /* none */
  }
  const pgBin = versions
    .filter((v) => /^\d+$/.test(v))
    .sort((x, y) => Number(y) - Number(x))
    .map((v) => `/usr/lib/postgresql/${v}/bin`)
    .find(withPlperl);
  if (!pgBin) return { missing: 'no PostgreSQL server with PL/Perl (apt-get install postgresql-plperl-15, or set BUCARDO_PG_BIN)' };
  return { bin, pgBin };
}

/** Last `lines` lines of a text, trimmed. */
function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function fileTail(file: string, lines = 20): Promise<string> {
  try {
    return tail(await readFile(file, 'utf8'), lines);
  } catch {
    return '(no log)';
  }
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** A text file from byte `from` on ('' when there is none). */
async function readFrom(file: string, from: number): Promise<string> {
  try {
    return (await readFile(file)).subarray(from).toString('utf8');
  } catch {
    return '';
  }
}

/** Alive and not a zombie (a zombie's kill(0) succeeds until it is reaped). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** Whether pid is a Bucardo process (its title starts with "Bucardo"), so that we never signal a reused pid. */
async function isBucardoProcess(pid: number): Promise<boolean> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).startsWith('Bucardo');
  } catch {
    return false;
  }
}

interface DbConn {
  dbname: string;
  host: string;
  port: string;
  user: string;
}

/** The parts of a postgres:// URL that Bucardo's `add db` takes; a password is refused. */
function parseUrl(url: string): DbConn {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error('not a postgres:// URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('not a postgres:// URL');
  if (u.password) throw new Error('URLs with a password are not supported (Bucardo would store it in its control database)');
  const dbname = decodeURIComponent(u.pathname.slice(1));
  const user = decodeURIComponent(u.username);
  if (!dbname || !user || !u.hostname) throw new Error('the URL needs a user, a host and a database');
  return { dbname, host: u.hostname, port: u.port || '5432', user };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench-bucardo' });
  try {
    await c.connect();
  } catch (e) {
    const u = new URL(url);
    throw new Error(`Cannot connect to ${u.hostname}:${u.port}${u.pathname}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

interface SyncInfo {
  dbs: Record<string, string>;
  sources: string[];
  tables: string[];
}

export interface BucardoSetUpOptions {
  /** Everything goes under it: the control cluster, Bucardo's HOME, PID files and logs. */
  workDir: string;
  /** The bucardo program (findBucardo). */
  bin: string;
  /** PostgreSQL bin directory whose server has PL/Perl (findBucardo). */
  pgBin: string;
  log?: BucardoLog;
  /** Extra server settings for the control cluster (startCluster's `settings`). */
  settings?: Record<string, string>;
  /** Bucardo settings on top of BUCARDO_SETTINGS. */
  bucardoSettings?: Record<string, string>;
}

/**
 * One Bucardo installation: a PostgreSQL control cluster of its own with the
 * `bucardo` database, and the daemon (MCP, a controller and a kid per sync, and
 * the VAC) once started. Syncs are added and removed while it is stopped.
 */
export class Bucardo {
  private readonly syncs = new Map<string, SyncInfo>();
  /** Bucardo database name -> URL, for the dbs added by addSync. */
  private readonly dbs = new Map<string, string>();
  private ctlClient: pg.Client | null = null;
  /** Bucardo's version, as `bucardo install` recorded it in the control database. */
  version = '';
  private running = false;
  private closed = false;

  private constructor(
    private readonly cluster: Cluster,
    private readonly bin: string,
    private readonly pgBin: string,
    readonly workDir: string,
    private readonly log: BucardoLog,
  ) {}

  /** Directory of Bucardo's PID files and stop file. */
  get pidDir(): string {
    return path.join(this.workDir, 'run');
  }
  /** Directory of Bucardo's logs; the daemon's log is log.bucardo in it. */
  get logDir(): string {
    return path.join(this.workDir, 'log');
  }
  /** The daemon's log file. */
  get logFile(): string {
    return path.join(this.logDir, 'log.bucardo');
  }
  /** URL of the control database. */
  get controlUrl(): string {
    return this.cluster.url('bucardo');
  }

  /** Starts a control cluster under workDir, runs `bucardo install` and applies the settings. */
  static async setUp(opts: BucardoSetUpOptions): Promise<Bucardo> {
    const log = opts.log ?? (() => {});
    const workDir = path.resolve(opts.workDir);
    await mkdir(workDir, { recursive: true });
    const msg = (o: object | string, m?: string) => log(`bucardo control cluster: ${typeof o === 'string' ? o : (m ?? '')}`);
    const clusterLog: ClusterLogger = { debug: () => {}, info: msg, warn: msg, error: msg };
    const cluster = await startCluster({
      binDir: opts.pgBin,
      dataDir: path.join(workDir, 'control'),
      logger: clusterLog,
      ...(opts.settings ? { settings: opts.settings } : {}),
    });
    const b = new Bucardo(cluster, opts.bin, opts.pgBin, workDir, log);
    try {
      await b.install({ ...BUCARDO_SETTINGS, ...opts.bucardoSettings });
      b.version = (await b.ctlQuery<{ v: string }>(`SELECT setting AS v FROM bucardo.bucardo_config WHERE name = 'bucardo_version'`))[0]?.v ?? '';
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return b;
  }

  private async install(settings: Record<string, string>): Promise<void> {
    await mkdir(path.join(this.workDir, 'home'), { recursive: true });
    await mkdir(this.pidDir, { recursive: true });
    await mkdir(this.logDir, { recursive: true });
    // The role first, without a password: `bucardo install` would otherwise
    // create it with a generated one and append that to $HOME/.pgpass.
    await withClient(this.cluster.url('postgres'), (c) => c.query('CREATE ROLE bucardo SUPERUSER LOGIN'));
    this.log('bucardo install');
    await this.run(['install', '--batch', '--dbhost', '127.0.0.1', '--dbport', String(this.cluster.port), '--dbuser', 'postgres', '--dbname', 'postgres']);
    const all: Record<string, string> = {
      ...settings,
      piddir: this.pidDir,
      reason_file: path.join(this.logDir, 'restart.reason'),
      warning_file: path.join(this.logDir, 'warning.log'),
      log_conflict_file: path.join(this.logDir, 'conflict.log'),
    };
    // bucardo_config's trigger lowercases most settings, piddir included, so a
    // work dir with capitals would break: set them with triggers off.
    await withClient(this.controlUrl, async (c) => {
      await c.query('BEGIN');
      await c.query('SET LOCAL session_replication_role = replica');
      for (const [name, value] of Object.entries(all)) {
        const r = await c.query('UPDATE bucardo.bucardo_config SET setting = $1 WHERE name = $2 AND item IS NULL', [value, name]);
        if (r.rowCount !== 1) throw new Error(`Unknown Bucardo setting ${name}`);
      }
      await c.query('COMMIT');
    });
  }

  /** Environment of the bucardo processes: HOME in the work dir, no PG* variables to redirect connections. */
  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!/^(PG|BUCARDO)/.test(k)) env[k] = v;
    env.HOME = path.join(this.workDir, 'home');
    env.PGBINDIR = this.pgBin; // `bucardo install` runs $PGBINDIR/psql
    return env;
  }

  /** Connection options of every command but install. */
  private common(): string[] {
    return [
      '--no-bucardorc',
      '--dbhost',
      '127.0.0.1',
      '--dbport',
      String(this.cluster.port),
      '--dbuser',
      'bucardo',
      '--dbname',
      'bucardo',
      '--piddir',
      this.pidDir,
    ];
  }

  /**
   * Runs `bucardo args...`; resolves with its output. A failure throws one
   * line naming the command (verb and nouns, no options), then the output's tail.
   */
  private async run(args: string[], timeoutMs = 60_000): Promise<string> {
    const full = args[0] === 'install' ? ['--no-bucardorc', ...args, '--piddir', this.pidDir] : [...this.common(), ...args];
    const opt = args.findIndex((a) => a.startsWith('-'));
    const what = `bucardo ${args
      .slice(0, opt < 0 ? undefined : opt)
      .filter((a) => !a.includes('='))
      .slice(0, 3)
      .join(' ')}`;
    const child = spawn(this.bin, full, { cwd: this.workDir, env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const code = await exitOf(child, timeoutMs, () => `${what} did not finish in ${timeoutMs / 1000} s`);
    if (code !== 0) throw new Error(`${what} failed (exit ${code}):\n${tail(out)}`);
    return out;
  }

  private async ctl(): Promise<pg.Client> {
    if (!this.ctlClient) {
      const c = new pg.Client({ connectionString: this.controlUrl, application_name: 'capra-bench-bucardo' });
      c.on('error', () => {});
      await c.connect();
      this.ctlClient = c;
    }
    return this.ctlClient;
  }

  private async ctlQuery<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await (await this.ctl()).query<T>(sql, params)).rows;
  }

  /**
   * Adds the databases (Bucardo name -> URL without a password), the tables
   * (schema.table, each with a primary key, on every db) as a relgroup named
   * after the sync, and the sync: `sources` are its source dbs, the others
   * its targets. Bucardo installs its schema and triggers on the sources
   * here; it copies no rows (see onetimecopy). Bucardo must be stopped. On
   * failure whatever was added is removed again.
   */
  async addSync(sync: string, opts: { dbs: Record<string, string>; sources: string[]; tables: string[]; kick?: 'notify' | 'poll' }): Promise<void> {
    if (this.running) throw new Error('Bucardo is running: stop() it before adding a sync');
    if (!NAME.test(sync) || ['pushdelta', 'fullcopy', 'swap', 'sync'].includes(sync.toLowerCase())) {
      throw new Error(`Invalid sync name for Bucardo: ${sync}`);
    }
    if (this.syncs.has(sync)) throw new Error(`Sync ${sync} already exists`);
    const names = Object.keys(opts.dbs);
    if (names.length < 2) throw new Error(`Sync ${sync} needs at least two databases`);
    if (opts.sources.length === 0 || opts.sources.some((s) => !names.includes(s))) {
      throw new Error(`Sync ${sync}: sources must be some of its databases (${names.join(', ')})`);
    }
    if (opts.tables.length === 0) throw new Error(`Sync ${sync} has no tables`);
    for (const t of opts.tables) if (!TABLE.test(t)) throw new Error(`Table names must be schema.table with plain identifiers: ${t}`);
    const conns = new Map<string, DbConn>();
    for (const [name, url] of Object.entries(opts.dbs)) {
      if (!NAME.test(name)) throw new Error(`Invalid database name for Bucardo: ${name}`);
      try {
        conns.set(name, parseUrl(url));
      } catch (e) {
        throw new Error(`Database ${name}: ${(e as Error).message}`);
      }
      const known = this.dbs.get(name);
      if (known !== undefined && known !== url) throw new Error(`Database ${name} was added before with another URL`);
    }
    // Bucardo's `add table` only warns about a table it cannot find.
    for (const [name, url] of Object.entries(opts.dbs)) {
      const bad = await withClient(url, async (c) => {
        const out: string[] = [];
        for (const t of opts.tables) {
          const [, schema, table] = TABLE.exec(t)!;
          const r = await c.query(
            `SELECT 1 FROM pg_constraint k JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
              WHERE n.nspname = $1 AND cl.relname = $2 AND k.contype = 'p'`,
            [schema, table],
          );
          if (r.rowCount === 0) out.push(t);
        }
        return out;
      });
      if (bad.length) throw new Error(`Database ${name} has no ${bad.join(', ')} with a primary key`);
    }

    const info: SyncInfo = { dbs: { ...opts.dbs }, sources: [...opts.sources], tables: [...opts.tables] };
    const dbs = names.map((n) => `${n}:${opts.sources.includes(n) ? 'source' : 'target'}`).join(',');
    try {
      for (const [name, url] of Object.entries(opts.dbs)) {
        if (this.dbs.has(name)) continue;
        const c = conns.get(name)!;
        await this.run(['add', 'db', name, `dbname=${c.dbname}`, `host=${c.host}`, `port=${c.port}`, `user=${c.user}`]);
        this.dbs.set(name, url);
      }
      await this.run(['add', 'table', ...opts.tables, `db=${opts.sources[0]!}`, `relgroup=${sync}`]);
      // poll: no kick trigger (autokick off); the controller kicks the sync itself every second (checktime).
      const kick = opts.kick === 'poll' ? ['autokick=0', 'checktime=1'] : [];
      await this.run(['add', 'sync', sync, `relgroup=${sync}`, `dbs=${dbs}`, ...kick]);
      // The CLI reports some problems and still exits 0: check the result.
      const goats = await this.ctlQuery<{ n: string }>('SELECT count(*) AS n FROM bucardo.herdmap h JOIN bucardo.sync s ON s.herd = h.herd WHERE s.name = $1', [
        sync,
      ]);
      if (Number(goats[0]?.n ?? 0) !== opts.tables.length) {
        throw new Error(`bucardo add sync ${sync}: its relgroup has ${goats[0]?.n ?? 0} of ${opts.tables.length} tables`);
      }
      for (const src of opts.kick === 'poll' ? [] : opts.sources) {
        const missing = await withClient(opts.dbs[src]!, async (c) => {
          const out: string[] = [];
          for (const t of opts.tables) {
            const [, schema, table] = TABLE.exec(t)!;
            const r = await c.query(
              `SELECT 1 FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
                WHERE n.nspname = $1 AND cl.relname = $2 AND tg.tgname = $3`,
              [schema, table, `bucardo_kick_${sync}`],
            );
            if (r.rowCount === 0) out.push(t);
          }
          return out;
        });
        if (missing.length) throw new Error(`bucardo add sync ${sync}: no kick trigger on ${missing.join(', ')} in ${src}`);
      }
    } catch (e) {
      await this.dismantle(sync, info).catch(() => {});
      throw e;
    }
    this.syncs.set(sync, info);
    this.log(`bucardo sync ${sync} added (${dbs}; ${opts.tables.length} tables)`);
  }

  /** The pid in one of Bucardo's PID files, or null. */
  private async pidFromFile(file: string): Promise<number | null> {
    try {
      const pid = Number(/\d+/.exec(await readFile(path.join(this.pidDir, file), 'utf8'))?.[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** The MCP's pid, from its PID file, or null. */
  private mcpPid(): Promise<number | null> {
    return this.pidFromFile('bucardo.mcp.pid');
  }

  /**
   * `bucardo start`, then waits until every added sync has finished a run
   * (a kid runs once at startup): its controller and kid are then up and
   * listening. Throws with the tail of Bucardo's log when a run fails, the
   * daemon dies, or after timeoutMs.
   */
  async start(syncs: string[] = [...this.syncs.keys()], timeoutMs = 60_000): Promise<void> {
    if (this.closed) throw new Error('Bucardo is closed');
    if (this.running) return;
    for (const n of syncs) if (!this.syncs.has(n)) throw new Error(`No sync ${n}`);
    // Only the syncs asked for run; the MCP leaves inactive ones alone.
    await this.ctlQuery(`UPDATE bucardo.sync SET status = CASE WHEN name = ANY($1) THEN 'active' ELSE 'inactive' END`, [syncs]);
    const t0 = (await this.ctlQuery<{ t: Date }>('SELECT clock_timestamp() AS t'))[0]!.t;
    const began = Date.now();
    const logStart = await fileSize(this.logFile);
    // The daemon is forked from the CLI and closes the inherited stdout and
    // stderr later: write them to a file rather than a pipe.
    const cliLog = path.join(this.logDir, 'start.out');
    const fh = await open(cliLog, 'w');
    try {
      const child = spawn(this.bin, [...this.common(), 'start', `--logdest=${this.logDir}`], {
        cwd: this.workDir,
        env: this.env(),
        stdio: ['ignore', fh.fd, fh.fd],
      });
      const code = await exitOf(child, 60_000, () => 'bucardo start did not finish in 60 s');
      if (code !== 0) throw new Error(`bucardo start failed (exit ${code}):\n${await fileTail(cliLog)}\n${await fileTail(this.logFile)}`);
    } finally {
      await fh.close();
    }
    this.running = true;
    const names = syncs;
    try {
      await this.waitReady(names, t0, logStart, began + timeoutMs);
    } catch (e) {
      await this.stop().catch(() => {}); // leave nothing half started
      throw e;
    }
    this.log(`bucardo started in ${((Date.now() - began) / 1000).toFixed(1)} s (${names.length} syncs)`);
  }

  /** start()'s wait: every sync has had a run since t0, then has answered a kick. */
  private async waitReady(names: string[], t0: Date, logStart: number, deadline: number): Promise<void> {
    for (;;) {
      const pid = await this.mcpPid();
      if (pid !== null && !(await isRunning(pid))) {
        throw new Error(`Bucardo's MCP (pid ${pid}) exited during startup; log:\n${await fileTail(this.logFile)}`);
      }
      const rows = await this.ctlQuery<{ name: string; done: boolean; bad: string | null }>(
        `SELECT s.name,
                EXISTS (SELECT 1 FROM bucardo.syncrun r WHERE r.sync = s.name AND r.started >= $1 AND r.ended IS NOT NULL
                          AND (r.lastgood OR r.lastempty)) AS done,
                (SELECT r.status FROM bucardo.syncrun r WHERE r.sync = s.name AND r.started >= $1 AND r.lastbad LIMIT 1) AS bad
           FROM bucardo.sync s WHERE s.name = ANY($2)`,
        [t0, names],
      );
      const bad = rows.find((r) => r.bad !== null);
      if (bad) throw new Error(`Bucardo sync ${bad.name} failed at startup (${bad.bad}); log:\n${await fileTail(this.logFile)}`);
      // A sync whose tables differ between dbs fails validation: the MCP
      // logs it and runs on without it.
      const invalid = /Validation of sync (\w+) FAILED/.exec(await readFrom(this.logFile, logStart))?.[1];
      if (invalid) throw new Error(`Bucardo could not validate sync ${invalid}; log:\n${await fileTail(this.logFile)}`);
      if (pid !== null && rows.length === names.length && rows.every((r) => r.done)) break;
      if (Date.now() > deadline) {
        const waiting = names.filter((n) => !rows.find((r) => r.name === n)?.done);
        throw new Error(
          `Bucardo did not get ${waiting.length ? `sync ${waiting.join(', ')}` : 'its MCP'} running in time; log:\n${await fileTail(this.logFile)}`,
        );
      }
      await sleep(50);
    }
    // That first run is the kid's own, at birth; its controller then sleeps
    // ctl_createkid_time (0.5 s) before it passes on kicks. One kick through
    // MCP, controller and kid shows the whole path works.
    for (const n of names) await this.kickAndWait(n, deadline);
  }

  /**
   * Kicks a sync the way `bucardo kick` does (NOTIFY on the control
   * database, which the MCP passes to the controller, which passes it to the
   * kid) and waits until a run that started after it has ended; kicks again
   * every 5 s, as a kick that reaches a controller without a kid is lost.
   */
  private async kickAndWait(sync: string, deadline: number): Promise<void> {
    const c = await this.ctl();
    let kicked = 0;
    let since: Date | null = null;
    for (;;) {
      if (Date.now() - kicked > 5_000) {
        since ??= (await this.ctlQuery<{ t: Date }>('SELECT clock_timestamp() AS t'))[0]!.t;
        await c.query(`NOTIFY ${c.escapeIdentifier(`bucardo_kick_sync_${sync}`)}`);
        kicked = Date.now();
      }
      const r = await this.ctlQuery<{ lastbad: boolean; status: string }>(
        'SELECT lastbad, status FROM bucardo.syncrun WHERE sync = $1 AND started >= $2 AND ended IS NOT NULL LIMIT 1',
        [sync, since],
      );
      if (r[0]?.lastbad) throw new Error(`Bucardo sync ${sync} failed (${r[0].status}); log:\n${await fileTail(this.logFile)}`);
      if (r[0]) return;
      if (Date.now() > deadline) throw new Error(`Bucardo sync ${sync} did not answer a kick in time; log:\n${await fileTail(this.logFile)}`);
      await sleep(20);
    }
  }

  /** `bucardo stop`, waiting until its processes are gone (SIGKILL after timeoutMs). */
  async stop(timeoutMs = 30_000): Promise<void> {
    const pids = await this.bucardoPids();
    if (pids.length === 0 && (await this.mcpPid()) === null) {
      this.running = false;
      return;
    }
    await this.run(['stop']);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const alive = (await Promise.all(pids.map(async (p) => ((await isRunning(p)) ? p : 0)))).filter((p) => p);
      if (alive.length === 0 && (await this.mcpPid()) === null) break;
      if (Date.now() > deadline) {
        for (const p of alive) if (await isBucardoProcess(p)) process.kill(p, 'SIGKILL');
        await rm(path.join(this.pidDir, 'bucardo.mcp.pid'), { force: true });
        this.log(`bucardo stop: killed ${alive.join(', ')} after ${timeoutMs / 1000} s`);
        break;
      }
      await sleep(50);
    }
    this.running = false;
    this.log('bucardo stopped');
  }

  /** Pids in Bucardo's PID files (MCP, VAC, controllers, kids) that are running. */
  private async bucardoPids(): Promise<number[]> {
    let files: string[] = [];
    try {
      files = (await readdir(this.pidDir)).filter((f) => f.endsWith('.pid'));
    } catch {
      return [];
    }
    const pids: number[] = [];
    for (const f of files) {
      try {
        const pid = Number(/\d+/.exec(await readFile(path.join(this.pidDir, f), 'utf8'))?.[0]);
        if (Number.isInteger(pid) && pid > 0 && (await isRunning(pid))) pids.push(pid);
      } catch {
        /* removed meanwhile */
      }
    }
    return pids;
  }

  /**
   * Removes a sync, stopping Bucardo first if it runs (start() again for the
   * other syncs): `bucardo remove` of the sync, its relgroup, its tables, its
   * dbgroup and its dbs unless other syncs use them; then Bucardo's triggers
   * on the sync's tables, and Bucardo's `bucardo` schema on the dbs no other
   * sync uses, so that later measurements on those databases start clean.
   * User tables and rows stay.
   */
  async removeSync(sync: string): Promise<void> {
    const info = this.syncs.get(sync);
    if (!info) throw new Error(`No sync ${sync}`);
    if (this.running || (await this.mcpPid()) !== null) await this.stop();
    await this.dismantle(sync, info);
    this.syncs.delete(sync);
    this.log(`bucardo sync ${sync} removed`);
  }

  /** removeSync's work, also undoing a half-done addSync: each step only if there is something to remove. */
  private async dismantle(sync: string, info: SyncInfo): Promise<void> {
    const others = [...this.syncs].filter(([n]) => n !== sync).map(([, s]) => s);
    const dbUsed = (db: string) => others.some((s) => db in s.dbs);
    const tableUsed = (db: string, t: string) => others.some((s) => db in s.dbs && s.tables.includes(t));
    const one = async (sql: string, params: unknown[]) => (await this.ctlQuery(sql, params)).length > 0;

    // Bucardo names the dbgroup after the sync, or reuses one with the same members.
    const dbgroup = (await this.ctlQuery<{ dbs: string | null }>('SELECT dbs FROM bucardo.sync WHERE name = $1', [sync]))[0]?.dbs;
    if (dbgroup !== undefined) await this.run(['remove', 'sync', sync]);
    if (await one('SELECT 1 FROM bucardo.herd WHERE name = $1', [sync])) await this.run(['remove', 'relgroup', sync]);
    const first = info.sources[0]!;
    const orphans = (
      await this.ctlQuery<{ t: string }>(
        `SELECT g.schemaname || '.' || g.tablename AS t FROM bucardo.goat g
        WHERE g.db = $1 AND g.schemaname || '.' || g.tablename = ANY($2)
          AND NOT EXISTS (SELECT 1 FROM bucardo.herdmap h WHERE h.goat = g.id)`,
        [first, info.tables],
      )
    ).map((r) => r.t);
    if (orphans.length) await this.run(['remove', 'table', ...orphans, `db=${first}`]);
    for (const g of new Set([dbgroup ?? null, sync])) {
      if (g && (await one('SELECT 1 FROM bucardo.dbgroup WHERE name = $1', [g])) && !(await one('SELECT 1 FROM bucardo.sync WHERE dbs = $1', [g]))) {
        await this.run(['remove', 'dbgroup', g]);
      }
    }
    const ownDbs = [];
    for (const d of Object.keys(info.dbs)) {
      if (dbUsed(d) || !(await one('SELECT 1 FROM bucardo.db WHERE name = $1', [d]))) continue;
      if (await one('SELECT 1 FROM bucardo.goat WHERE db = $1 UNION ALL SELECT 1 FROM bucardo.dbmap WHERE db = $1', [d])) continue;
      ownDbs.push(d);
    }
    if (ownDbs.length) await this.run(['remove', 'db', ...ownDbs]);
    for (const d of ownDbs) this.dbs.delete(d);

    for (const [db, url] of Object.entries(info.dbs)) {
      await withClient(url, async (c) => {
        // Bucardo's triggers on the sync's tables: all of them when no other
        // sync uses the table there, else the ones named after this sync.
        for (const t of info.tables) {
          const [, schema, table] = TABLE.exec(t)!;
          const r = await c.query<{ tgname: string }>(
            `SELECT tg.tgname FROM pg_trigger tg
               JOIN pg_class cl ON cl.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
               JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
              WHERE n.nspname = $1 AND cl.relname = $2 AND NOT tg.tgisinternal AND pn.nspname = 'bucardo'
                AND ($3 OR tg.tgname IN ($4, $5))`,
            [schema, table, !tableUsed(db, t), `bucardo_kick_${sync}`, `bucardo_note_trunc_${sync}`],
          );
          for (const { tgname } of r.rows) {
            await c.query(`DROP TRIGGER ${c.escapeIdentifier(tgname)} ON ${c.escapeIdentifier(schema!)}.${c.escapeIdentifier(table!)}`);
          }
        }
        // Bucardo's schema (delta tables, functions) when no other sync uses
        // the db; with the triggers gone nothing outside it depends on it.
        if (!dbUsed(db)) await c.query('DROP SCHEMA IF EXISTS bucardo CASCADE');
      });
    }
  }

  /**
   * A one-time full copy of the sync's tables from its (first) source into
   * its targets (onetimecopy=1: targets emptied, then COPY), on a running
   * Bucardo: the setting, a reload of the sync (so its new controller and kid
   * see it) and a kick. Resolves with the copy run's duration in seconds as
   * Bucardo's syncrun table records it (the kid's run, without the reload's
   * fixed 2 s pause), once a new kid is up and has answered a kick: a kid
   * exits after a onetimecopy run and its controller makes a new one
   * (ctl_checkonkids_time, then kid_restart_sleep).
   */
  async onetimecopy(sync: string, timeoutMs = 300_000): Promise<number> {
    const info = this.syncs.get(sync);
    if (!info) throw new Error(`No sync ${sync}`);
    if (Object.keys(info.dbs).length === info.sources.length) throw new Error(`Sync ${sync} has no targets to copy into`);
    if (!this.running) throw new Error('Bucardo is not running: start() it first');
    await this.run(['update', 'sync', sync, 'onetimecopy=1']);
    const out = await this.run(['reload', 'sync', sync]);
    if (!/successful/.test(out)) throw new Error(`bucardo reload sync ${sync} failed:\n${tail(out)}`);
    const t0 = (await this.ctlQuery<{ t: Date }>('SELECT clock_timestamp() AS t'))[0]!.t;
    await this.run(['kick', 'sync', sync]);
    const deadline = Date.now() + timeoutMs;
    let copy: { seconds: number; kid: number; rows: number } | null = null;
    for (;;) {
      if (!copy) {
        const rows = await this.ctlQuery<{ seconds: number | null; lastbad: boolean; status: string; inserts: string }>(
          `SELECT extract(epoch FROM ended - started)::float8 AS seconds, lastbad, status, inserts
             FROM bucardo.syncrun WHERE sync = $1 AND started >= $2 ORDER BY started LIMIT 1`,
          [sync, t0],
        );
        const r = rows[0];
        if (r?.lastbad) throw new Error(`Bucardo onetimecopy of ${sync} failed (${r.status}); log:\n${await fileTail(this.logFile)}`);
        if (r && r.seconds !== null) copy = { seconds: r.seconds, kid: Number(/KID (\d+)/.exec(r.status)?.[1] ?? 0), rows: Number(r.inserts) };
      }
      if (copy) {
        const kid = await this.pidFromFile(`bucardo.kid.sync.${sync}.pid`);
        if (kid !== null && kid !== copy.kid && (await isRunning(kid))) {
          await this.kickAndWait(sync, deadline);
          break;
        }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `Bucardo onetimecopy of ${sync} not ${copy ? 'followed by a new kid' : 'done'} in ${timeoutMs / 1000} s; log:\n${await fileTail(this.logFile)}`,
        );
      }
      await sleep(50);
    }
    this.log(`bucardo onetimecopy of ${sync}: ${copy.rows} rows in ${copy.seconds.toFixed(2)} s`);
    return copy.seconds;
  }

  /** stop() if running, then stops the control cluster. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.stop();
    } finally {
      await this.ctlClient?.end().catch(() => {});
      this.ctlClient = null;
      await this.cluster.stop();
    }
  }
}

/** Exit code of a child; kills it (it is ours) and throws after timeoutMs. */
function exitOf(child: ChildProcess, timeoutMs: number, timeoutMessage: () => string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(timeoutMessage()));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
