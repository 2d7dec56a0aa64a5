import type { Config, SyncConfig } from '../config/types.js';
import { Connections } from '../db/connections.js';
import type { Logger } from '../util/logger.js';
import { type ValidateReport, place } from '../validate/report.js';
import { validate } from '../validate/validate.js';

/**
 * `capra validate [--sync S] [--fix] [--json]`: one line per problem (where,
 * what is wrong, what --fix does or that it cannot), per fix done, and per
 * lane's backlog; exit 1 while any problem is left.
 */
export async function validateCommand(
  cfg: Config,
  syncs: SyncConfig[],
  opts: { fix: boolean; json: boolean; all: boolean },
  out: (line: string) => void,
  logger: Logger,
): Promise<number> {
  const conns = new Connections(cfg, 'capra-cli', logger);
  const abort = new AbortController();
  const onInt = (): void => abort.abort();
  process.once('SIGINT', onInt);
  try {
    const report = await validate(cfg, conns, { syncs, orphans: opts.all, fix: opts.fix, ddl: { signal: abort.signal } });
    if (opts.json) out(JSON.stringify(asList(report), null, 2));
    else for (const line of formatValidate(report)) out(line);
    return report.ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onInt);
    await conns.close();
  }
}

/** The report as one list, each entry saying what kind it is. */
export function asList(r: ValidateReport): Record<string, unknown>[] {
  return [
    ...r.fixed.map((f) => ({ kind: 'fixed', ...f })),
    ...r.problems.map((p) => ({ kind: 'problem', ...p, fix: p.fix ?? null })),
    ...r.backlog.map((b) => ({ kind: 'backlog', ...b })),
  ];
}

export function formatValidate(r: ValidateReport): string[] {
  const lines = [
    ...r.fixed.map((f) => `fixed: ${place(f)}: ${f.did}`),
    ...r.problems.map((p) => `problem: ${place(p)}: ${p.what}; ${p.fix ? `--fix would ${p.fix}` : '--fix cannot fix this'}`),
    ...r.backlog.map(
      (b) =>
        `backlog: sync ${b.sync}, ${b.source} -> ${b.target}: ${
          b.rows === null ? (b.error ? `unknown (${b.error})` : 'no position yet') : `${b.rows} change(s) pending, oldest ${b.oldestSeconds} s`
        }`,
    ),
  ];
  lines.push(r.ok ? 'validate: all is well' : `validate: ${r.problems.length} problem(s)`);
  return lines;
}
