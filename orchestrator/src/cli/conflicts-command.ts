import type { Config } from '../config/types.js';
import { Connections } from '../db/connections.js';
import { CapraError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

export interface ConflictRow {
  id: number;
  at: string;
  sync: string;
  table: string;
  key: Record<string, unknown>;
  versions: { db: string; changed_at: string; clock: string; row: Record<string, unknown> | null }[];
  strategy: string;
  decision: string;
  winner: string | null;
  detail: Record<string, unknown> | null;
}

/** The latest conflicts of the job (of some syncs), newest first, from the metadata database. */
export async function recentConflicts(cfg: Config, logger: Logger, opts: { syncs: string[]; limit: number }): Promise<ConflictRow[]> {
  for (const s of opts.syncs) {
    if (!cfg.syncs[s]) throw new CapraError(`unknown sync ${s} (syncs in ${cfg.file}: ${Object.keys(cfg.syncs).join(', ')})`);
  }
  const conns = new Connections(cfg, 'capra-cli', logger);
  try {
    const r = await conns.with(Connections.META, (c) =>
      c.query<ConflictRow & { id: string; at: Date }>(
        `SELECT id, at, sync, table_name AS table, key, versions, strategy, decision, winner, detail FROM repl.conflict
          WHERE cardinality($1::text[]) = 0 OR sync = ANY ($1::text[]) ORDER BY id DESC LIMIT $2`,
        [opts.syncs, opts.limit],
      ),
    );
    return r.rows.map((x) => ({ ...x, id: Number(x.id), at: x.at.toISOString() }));
  } finally {
    await conns.close();
  }
}

/** One line per conflict: what each node had, the rule, and what it decided. */
export function formatConflicts(rows: ConflictRow[]): string {
  if (rows.length === 0) return 'no conflicts';
  return rows
    .map((c) => {
      const versions = c.versions.map((v) => `${v.db} ${v.row === null ? 'deleted' : JSON.stringify(v.row)} at ${v.changed_at}`).join('; ');
      const outcome = c.decision === 'winner' ? `${c.winner} wins` : c.decision === 'merged' ? `merged ${JSON.stringify(c.detail?.row)}` : c.decision;
      const seed = c.detail && 'seed' in c.detail ? ` (seed ${String(c.detail.seed)})` : '';
      return `#${c.id} ${c.at} sync ${c.sync} ${c.table} ${JSON.stringify(c.key)}: ${versions}; ${c.strategy} -> ${outcome}${seed}`;
    })
    .join('\n');
}
