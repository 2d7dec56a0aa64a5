import type { SyncConfig } from '../config/types.js';
import { applyError } from '../db/errors.js';
import { onlyUnlessPartitioned, quoteTable } from '../db/ident.js';
import { keyDefs, keyMatch } from './apply.js';
import type { Conflict, ConflictResolver, Decision, Version } from './conflict.js';
import type { Changes, SourceRun } from './swap-sources.js';

/**
 * Multi-master, step two: settling conflicts. A key in two or more sources'
 * batches is a conflict, settled by the table's rule. The winner's row goes
 * to every other node; without a conflict, the one source that changed a key
 * is its winner. A TRUNCATE replaces the table everywhere with the contents
 * of the (first listed) source that truncated it.
 */

export interface LoggedConflict extends Conflict {
  rule: string;
  decision: Decision;
}

/** A row to write on every node but `except` (row null: delete it). */
export interface ExplicitRow {
  key: string;
  row: Record<string, unknown> | null;
  except: string | null;
}

export interface Settlement {
  logged: LoggedConflict[];
  /** source -> table -> keys (as JSON text) it does not send */
  withheld: Map<string, Map<string, string[]>>;
  /** table -> rows written as given rather than copied from a source */
  explicit: Map<string, ExplicitRow[]>;
  /** table -> the source whose contents replace it everywhere */
  truncatedBy: Map<string, SourceRun>;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  list.push(value);
}

export async function settle(sources: SourceRun[], changes: Changes, sync: SyncConfig, resolver: ConflictResolver): Promise<Settlement> {
  const truncatedBy = new Map<string, SourceRun>();
  for (const s of sources) for (const t of s.truncated) if (!truncatedBy.has(t)) truncatedBy.set(t, s);
  const logged: LoggedConflict[] = [];
  const withheld = new Map<string, Map<string, string[]>>();
  const explicit = new Map<string, ExplicitRow[]>();
  const withhold = (db: string, table: string, key: string): void => {
    let m = withheld.get(db);
    if (!m) withheld.set(db, (m = new Map()));
    push(m, table, key);
  };
  for (const [table, keys] of changes) {
    if (truncatedBy.has(table)) continue;
    const contested = [...keys].filter(([, by]) => by.size > 1 && [...by.values()].some((c) => c.inBatch));
    if (contested.length === 0) continue;
    const rows = await readVersions(
      sources,
      table,
      contested.map(([k]) => k),
    );
    for (const [key, by] of contested) {
      const versions: Version[] = [...by.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([db, c]) => ({ db, changedUs: c.us, changedAt: c.at, clock: sources.find((s) => s.db === db)!.clock, row: rows.get(db)?.get(key) ?? null }));
      let decision: Decision;
      if (versions.every((v) => JSON.stringify(v.row) === JSON.stringify(versions[0]!.row))) {
        // The same row everywhere (the same change made twice, or a node that
        // was left out getting back what the others already settled): nothing to settle.
        decision = { kind: 'winner', db: versions.find((v) => by.get(v.db)!.inBatch)!.db };
      } else {
        const conflict: Conflict = { sync: sync.name, table, key: JSON.parse(key) as Record<string, unknown>, versions };
        const settled = await resolver.decide(conflict);
        decision = settled.decision;
        logged.push({ ...conflict, ...settled });
      }
      for (const [db, c] of by) {
        if (c.inBatch && !(decision.kind === 'winner' && decision.db === db)) withhold(db, table, key);
      }
      if (decision.kind === 'winner' && !by.get(decision.db)!.inBatch) {
        const winner = decision.db;
        push(explicit, table, { key, row: versions.find((v) => v.db === winner)!.row, except: winner });
      } else if (decision.kind === 'merged' || decision.kind === 'deleted') {
        push(explicit, table, { key, row: decision.kind === 'merged' ? decision.row : null, except: null });
      }
    }
  }
  return { logged, withheld, explicit, truncatedBy };
}

/** Every source's current row for each contested key (none where deleted): source -> key -> row. */
async function readVersions(sources: SourceRun[], table: string, keys: string[]): Promise<Map<string, Map<string, Record<string, unknown>>>> {
  const out = new Map<string, Map<string, Record<string, unknown>>>();
  for (const s of sources) {
    const meta = s.metas.get(table)?.meta;
    if (!meta) continue;
    try {
      const r = await s.client.query<{ pk: string; row: Record<string, unknown> }>(
        `SELECT to_jsonb(k)::text AS pk, to_jsonb(t) AS row
           FROM jsonb_to_recordset($1::jsonb) AS k(${keyDefs(meta)})
           JOIN ${onlyUnlessPartitioned(meta.partitioned)}${quoteTable(meta)} t ON ${keyMatch(meta.keyCols, 't', 'k')}`,
        [`[${keys.join(',')}]`],
      );
      out.set(s.db, new Map(r.rows.map((x) => [x.pk, x.row])));
    } catch (err) {
      throw applyError(s.db, err, table);
    }
  }
  return out;
}
