import type { Config, SyncConfig } from '../config/types.js';
import { loadConfig } from '../config/load.js';
import { Connections } from '../db/connections.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { install, uninstall } from '../install/install.js';
import { collectStatus } from '../status/status.js';
import { addTriggers, dropTriggers } from '../triggers/sync-triggers.js';
import type { Logger } from '../util/logger.js';
import { makeLogger } from '../util/make-logger.js';
import { type Args, parseArgs } from './args.js';
import { cloneCommand } from './clone-command.js';
import { compareCommand, repairCommand } from './compare-command.js';
import { configCommand } from './config-command.js';
import { formatConflicts, recentConflicts } from './conflicts-command.js';
import { reloadDaemon, runForeground, startDetached, stopDaemon } from './daemon-control.js';
import { kickCommand } from './kick-command.js';
import { pauseCommand } from './pause-command.js';
import { formatStatus } from './print-status.js';
import { validateCommand } from './validate-command.js';
import { commandUsage, usage } from './usage.js';

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const err = (line: string): void => void process.stderr.write(`${line}\n`);

function cliLogger(cfg: Config, args: Args): Logger {
  return makeLogger({ level: args.verbose ? 'debug' : 'warn', job: cfg.name, human: true, out: process.stderr });
}

function selectedSyncs(cfg: Config, args: Args): SyncConfig[] {
  if (args.syncs.length === 0) return Object.values(cfg.syncs);
  return args.syncs.map((s) => {
    const sync = cfg.syncs[s];
    if (!sync) throw new CapraError(`unknown sync ${s} (syncs in ${cfg.file}: ${Object.keys(cfg.syncs).join(', ')})`);
    return sync;
  });
}

async function triggersCommand(cfg: Config, args: Args, add: boolean): Promise<void> {
  const logger = cliLogger(cfg, args);
  const conns = new Connections(cfg, 'capra-cli', logger);
  const abort = new AbortController();
  const onInt = (): void => abort.abort();
  process.once('SIGINT', onInt);
  try {
    for (const sync of selectedSyncs(cfg, args)) {
      const progress = (e: { node: string; table: string; action: string; attempt?: number }): void =>
        err(
          e.action === 'waiting'
            ? `${sync.name}: ${e.table}: lock busy, retrying (attempt ${e.attempt})`
            : `${sync.name}: ${e.node}: ${e.table}: triggers ${e.action}`,
        );
      if (add) {
        const tables = await addTriggers(cfg, sync, conns, logger, { progress, ddl: { signal: abort.signal } });
        out(`sync ${sync.name}: capture triggers on ${tables.length} table(s)`);
      } else {
        await dropTriggers(cfg, sync, conns, logger, { progress, ddl: { signal: abort.signal } });
        out(`sync ${sync.name}: capture triggers dropped`);
      }
    }
  } finally {
    process.off('SIGINT', onInt);
    await conns.close();
  }
}

async function run(args: Args): Promise<number> {
  const { command } = args;
  if (args.help || command === undefined) {
    out(command === undefined ? usage() : commandUsage(command));
    return args.help ? 0 : 2;
  }
  if (command === 'demo') {
    const { runDemo } = await import('../demo/demo.js');
    // The demo's servers run in their own process group, so Ctrl-C reaches
    // only us: stop where we are and clean up; a second one exits at once.
    const abort = new AbortController();
    const onSignal = (): void => {
      if (abort.signal.aborted) process.exit(130);
      err('capra: interrupted: stopping the servers and removing the temporary directory (again to exit at once)');
      abort.abort(new CapraError('demo interrupted; its servers were stopped and its temporary directory removed'));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      await runDemo({ print: out, signal: abort.signal });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  }
  if (command === 'config') return configCommand(args.config, args.operands, { json: args.json, out });
  const cfg = await loadConfig(args.config);
  switch (command) {
    case 'install':
      await install(cfg, cliLogger(cfg, args));
      out(`installed job ${cfg.name}`);
      return 0;
    case 'uninstall':
      await uninstall(cfg, cliLogger(cfg, args));
      out(`uninstalled job ${cfg.name}`);
      return 0;
    case 'add-triggers':
    case 'drop-triggers':
      await triggersCommand(cfg, args, command === 'add-triggers');
      return 0;
    case 'start':
      if (args.foreground) await runForeground(cfg, { metricsPort: args.metricsPort });
      else await startDetached(cfg, out, { metricsPort: args.metricsPort });
      return 0;
    case 'stop':
      await stopDaemon(cfg, out);
      return 0;
    case 'reload':
      await reloadDaemon(cfg, out);
      return 0;
    case 'restart':
      await stopDaemon(cfg, out);
      await startDetached(cfg, out, { metricsPort: args.metricsPort });
      return 0;
    case 'clone':
      return cloneCommand(cfg, { ...args.clone, sync: args.syncs[0] }, { out, progress: process.stderr }, cliLogger(cfg, args));
    case 'conflicts': {
      const rows = await recentConflicts(cfg, cliLogger(cfg, args), { syncs: args.syncs, limit: args.limit });
      out(args.json ? JSON.stringify(rows, null, 2) : formatConflicts(rows));
      return 0;
    }
    case 'validate':
      return validateCommand(
        cfg,
        selectedSyncs(cfg, args),
        { fix: args.fix === true, json: args.json, all: args.syncs.length === 0 },
        out,
        cliLogger(cfg, args),
      );
    case 'kick':
      return kickCommand(cfg, selectedSyncs(cfg, args), { waitSeconds: args.kickWait, json: args.json }, out, cliLogger(cfg, args));
    case 'pause':
    case 'resume':
      return pauseCommand(cfg, selectedSyncs(cfg, args), command === 'pause', out, cliLogger(cfg, args));
    case 'compare':
      return compareCommand(
        cfg,
        selectedSyncs(cfg, args),
        { tables: args.compareTables, nodes: args.compareNodes, json: args.json },
        out,
        cliLogger(cfg, args),
      );
    case 'repair':
      return repairCommand(
        cfg,
        selectedSyncs(cfg, args),
        { tables: args.compareTables, dryRun: args.dryRun === true, json: args.json },
        out,
        cliLogger(cfg, args),
      );
    case 'status': {
      const st = await collectStatus(cfg, cliLogger(cfg, args), args.maxLag === undefined ? {} : { maxLagSeconds: args.maxLag });
      out(args.json ? JSON.stringify(st, null, 2) : formatStatus(st));
      return st.healthy ? 0 : 1;
    }
  }
  return 2;
}

/** Entry point: one line on failure, no stack trace unless --verbose. */
export async function main(argv: string[]): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    err(`capra: ${errorMessage(e)}`);
    process.exitCode = 2;
    return;
  }
  try {
    process.exitCode = await run(args);
  } catch (e) {
    err(`capra: ${errorMessage(e).split('\n')[0]}`);
    if (args.verbose && e instanceof Error) err(e.stack ?? '');
    process.exitCode = e instanceof CapraError ? 1 : 70;
  }
}
