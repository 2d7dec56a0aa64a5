import { spawn } from 'node:child_process';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { logfilePath, pidfilePath } from '../config/types.js';
import { Daemon } from '../daemon/daemon.js';
import { type MetricsServer, serveMetrics } from '../daemon/metrics-server.js';
import { claimPidfile, isAlive, readPid, releasePidfile } from '../daemon/pidfile.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { sleep } from '../util/backoff.js';
import { makeLogger } from '../util/make-logger.js';
import { packageRoot } from '../util/paths.js';
import { Connections } from '../db/connections.js';
import { silentLogger } from '../util/logger.js';
import { refuseNewerNodes } from '../validate/migration-level.js';

/**
 * `capra start --foreground`: the daemon in this process, for systemd,
 * containers and the detached start. First SIGTERM/SIGINT: finish the runs
 * in progress and exit; a second: exit at once. SIGHUP: re-read the config
 * file (a bad one is logged and the running config kept).
 */
export interface DaemonFlags {
  /** Serve Prometheus metrics on this port (127.0.0.1; 0 picks a free one). */
  metricsPort?: number;
}

/** Refuses to start when a database of the job was installed by a newer capra: this one would misread its tables. */
async function refuseNewerSchemas(cfg: Config): Promise<void> {
  const conns = new Connections(cfg, 'capra-cli', silentLogger, { probe: false });
  try {
    await refuseNewerNodes(cfg, conns);
  } finally {
    await conns.close();
  }
}

export async function runForeground(cfg: Config, flags: DaemonFlags = {}): Promise<void> {
  await refuseNewerSchemas(cfg);
  const pidfile = pidfilePath(cfg);
  await claimPidfile(pidfile);
  const logger = makeLogger({ level: cfg.logLevel, job: cfg.name, human: process.stdout.isTTY === true });
  const daemon = new Daemon(cfg, logger);
  let metrics: MetricsServer | null = null;
  if (flags.metricsPort !== undefined) {
    try {
      metrics = await serveMetrics({ metrics: daemon.metrics, port: flags.metricsPort, refresh: () => daemon.refreshMetrics(), logger });
    } catch (err) {
      await releasePidfile(pidfile);
      throw err;
    }
    logger.info({ port: metrics.port }, 'serving metrics on /metrics');
  }
  let signals = 0;
  const done = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal: sig }, 'second signal: exiting at once');
        void releasePidfile(pidfile).finally(() => process.exit(1));
        return;
      }
      logger.info({ signal: sig }, 'signal received');
      void daemon.stop().then(resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  process.on('SIGHUP', () => {
    void (async () => {
      try {
        const next = await loadConfig(cfg.file);
        await daemon.reload(next);
        (logger as unknown as { level: string }).level = next.logLevel;
        logger.info({ file: cfg.file }, 'config reloaded');
      } catch (err) {
        logger.error({ err: errorMessage(err) }, 'reload failed; keeping the running config');
      }
    })();
  });
  try {
    daemon.start();
  } catch (err) {
    await daemon.stop();
    await releasePidfile(pidfile);
    throw err;
  }
  logger.info({ pid: process.pid, pidfile }, 'running');
  await done;
  await metrics?.close();
  await releasePidfile(pidfile);
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** `capra start`: the daemon detached, logging to its log file; returns once it holds its pidfile. */
export async function startDetached(cfg: Config, print: (line: string) => void, flags: DaemonFlags = {}): Promise<void> {
  const pidfile = pidfilePath(cfg);
  const running = await readPid(pidfile);
  if (running !== null && isAlive(running)) throw new CapraError(`job ${cfg.name} is already running as pid ${running} (pidfile ${pidfile})`);
  await refuseNewerSchemas(cfg);
  const logfile = logfilePath(cfg);
  await mkdir(path.dirname(logfile), { recursive: true });
  const log = await open(logfile, 'a');
  const extra = flags.metricsPort !== undefined ? ['--metrics-port', String(flags.metricsPort)] : [];
  const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'capra.js'), '--config', cfg.file, 'start', '--foreground', ...extra], {
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
    env: process.env,
  });
  await log.close();
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (exited !== null) {
      const last = (await tail(logfile, 1)).trim();
      let reason = last;
      try {
        reason = String((JSON.parse(last) as { msg?: string }).msg ?? last);
      } catch {
        // a plain line
      }
      throw new CapraError(`the daemon exited at start (status ${exited}): ${reason || `see ${logfile}`}`);
    }
    if ((await readPid(pidfile)) === child.pid) {
      print(`started job ${cfg.name} as pid ${child.pid} (pidfile ${pidfile}, log ${logfile})`);
      return;
    }
    await sleep(100);
  }
  throw new CapraError(`the daemon did not write its pidfile ${pidfile} within 15 s; see ${logfile}`);
}

/** `capra reload`: the daemon re-reads its config file and table definitions, without losing work. */
export async function reloadDaemon(cfg: Config, print: (line: string) => void): Promise<void> {
  const pidfile = pidfilePath(cfg);
  const pid = await readPid(pidfile);
  if (pid === null || !isAlive(pid)) throw new CapraError(`job ${cfg.name} is not running (pidfile ${pidfile})`);
  try {
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    throw new CapraError(`cannot signal pid ${pid}: ${errorMessage(err)}`, { cause: err });
  }
  print(`asked job ${cfg.name} (pid ${pid}) to reload ${cfg.file}; its log says when it has`);
}

/** `capra stop`: SIGTERM, then wait for the daemon to finish its runs and exit. */
export async function stopDaemon(cfg: Config, print: (line: string) => void, timeoutMs = 60_000): Promise<void> {
  const pidfile = pidfilePath(cfg);
  const pid = await readPid(pidfile);
  if (pid === null || !isAlive(pid)) {
    print(`job ${cfg.name} is not running`);
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    throw new CapraError(`cannot signal pid ${pid}: ${errorMessage(err)}`, { cause: err });
  }
  for (let waited = 0; waited < timeoutMs; waited += 100) {
    if (!isAlive(pid)) {
      print(`stopped job ${cfg.name} (pid ${pid})`);
      return;
    }
    await sleep(100);
  }
  throw new CapraError(`pid ${pid} did not stop within ${timeoutMs / 1000} s; run capra stop again to make it exit at once`);
}
