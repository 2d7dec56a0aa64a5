import type { Config, SyncConfig } from '../config/types.js';
import { differing, compareSync } from '../compare/compare.js';
import { compareJson, formatCompare, progressLine } from '../compare/report.js';
import { type RepairReport, repairSync } from '../compare/repair.js';
import type { TableResult } from '../compare/table-compare.js';
import { Connections } from '../db/connections.js';
import type { Logger } from '../util/logger.js';

export interface CompareCommandOptions {
  tables?: string[];
  nodes?: string[];
  json: boolean;
}

/** A progress bar on stderr when it is a terminal, redrawn in place; nothing otherwise. */
function progressBar(stream: NodeJS.WriteStream): { show?: (p: Parameters<typeof progressLine>[0]) => void; done(): void } {
  if (!stream.isTTY) return { done: () => {} };
  let drawn = false;
  return {
    show: (p) => {
      stream.write(`\r${progressLine(p).slice(0, (stream.columns ?? 100) - 1)}\x1b[K`);
      drawn = true;
    },
    done: () => void (drawn && stream.write('\r\x1b[K')),
  };
}

/** `capra compare`: one line per table and database; exit 1 when any differ. */
export async function compareCommand(
  cfg: Config,
  syncs: SyncConfig[],
  opts: CompareCommandOptions,
  out: (line: string) => void,
  logger: Logger,
): Promise<number> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  const bar = progressBar(process.stderr);
  try {
    const results: TableResult[] = [];
    for (const sync of syncs) {
      results.push(...(await compareSync(conns, cfg.name, sync, { tables: opts.tables, nodes: opts.nodes, versions: opts.json, progress: bar.show }, logger)));
    }
    bar.done();
    if (opts.json) out(JSON.stringify(compareJson(results), null, 2));
    else for (const line of formatCompare(results)) out(line);
    return results.some((r) => differing(r) > 0) ? 1 : 0;
  } finally {
    bar.done();
    await conns.close();
  }
}

/** Actions listed in the text output. */
const SHOWN_ACTIONS = 50;

function formatRepair(r: RepairReport): string[] {
  const lines = formatCompare(r.results).slice(0, -1);
  for (const a of r.actions.slice(0, SHOWN_ACTIONS)) {
    const key = Object.values(a.key).join(', ');
    const what = a.action === 'copy' ? `take ${a.from}'s row (or its absence)` : a.action === 'delete' ? 'delete the row' : "write the handler's merged row";
    lines.push(`${r.dryRun ? 'would repair' : 'repair'}: ${a.sync}: ${a.table} (${key}) on ${a.node}: ${what} [${a.rule}]`);
  }
  if (r.actions.length > SHOWN_ACTIONS) lines.push(`... and ${r.actions.length - SHOWN_ACTIONS} more (--json lists them all)`);
  if (r.actions.length === 0) lines.push('repair: nothing to do, the databases agree');
  else if (r.dryRun) lines.push(`repair: dry run, ${r.actions.length} action(s), nothing changed`);
  else
    lines.push(
      `repair: ${r.actions.length - r.skipped} key(s) repaired, ${r.rows} row(s) written${r.skipped ? `, ${r.skipped} left to the sync (changed meanwhile)` : ''}`,
    );
  return lines;
}

/** `capra repair`: compare, then make the databases agree; --dry-run only says what it would do. */
export async function repairCommand(
  cfg: Config,
  syncs: SyncConfig[],
  opts: { tables?: string[]; dryRun: boolean; json: boolean },
  out: (line: string) => void,
  logger: Logger,
): Promise<number> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    for (const sync of syncs) {
      const r = await repairSync(conns, cfg.name, sync, { tables: opts.tables, dryRun: opts.dryRun }, logger);
      if (opts.json) out(JSON.stringify({ ...r, results: compareJson(r.results) }, null, 2));
      else for (const line of formatRepair(r)) out(line);
    }
    return 0;
  } finally {
    await conns.close();
  }
}
