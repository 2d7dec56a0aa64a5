import { randomInt } from 'node:crypto';
import type { ConflictRule, HandlerRef, SyncConfig } from '../config/types.js';
import { Connections } from '../db/connections.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { tableLabel } from '../db/ident.js';
import { parseTableName } from '../db/table-ref.js';
import { handlerName, loadHandler, sqlFunction } from './handler.js';

/**
 * Conflicts of multi-master syncs: a key changed on two or more sources since
 * the last run. Each is settled, key by key, by the rule configured for its
 * table; every rule is deterministic given what it is shown (random logs the
 * seed that picked), so every node ends up with the same row.
 */

/** One source's side of a conflict. */
export interface Version {
  db: string;
  /** When the source last changed the key, in microseconds since the epoch (for comparing). */
  changedUs: bigint;
  /** The same instant as the database printed it (for the log). */
  changedAt: string;
  /** commit: track_commit_timestamp's commit time; change: the clock when the row was written. */
  clock: 'commit' | 'change';
  /** The row as the source has it now; null where it is deleted. */
  row: Record<string, unknown> | null;
}

export interface Conflict {
  sync: string;
  /** schema.table */
  table: string;
  key: Record<string, unknown>;
  /** One per source that changed the key, in name order. */
  versions: Version[];
}

export type Decision =
  | { kind: 'winner'; db: string; detail?: Record<string, unknown> }
  | { kind: 'merged'; row: Record<string, unknown> }
  | { kind: 'deleted' }
  | { kind: 'skipped' };

/** The rule for a table: its override, else the sync's default. */
export function ruleFor(sync: SyncConfig, table: string): ConflictRule {
  for (const [ref, rule] of Object.entries(sync.conflict.tables)) {
    if (tableLabel(parseTableName(ref)) === table) return rule;
  }
  return sync.conflict.default;
}

/** How a rule is named in the log and in messages. */
export function ruleName(rule: ConflictRule): string {
  if (Array.isArray(rule)) return `[${rule.join(', ')}]`;
  if (typeof rule === 'object') return `handler ${handlerName(rule.handler)}`;
  return rule;
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The most recent change wins; equal times go to the database whose name sorts first. */
export function latest(versions: Version[]): string {
  let best = versions[0]!;
  for (const v of versions.slice(1)) {
    if (v.changedUs > best.changedUs || (v.changedUs === best.changedUs && byName(v.db, best.db) < 0)) best = v;
  }
  return best.db;
}

/** The first database of `order` that changed the key; one the list leaves out loses to every listed one, then latest decides. */
export function firstListed(order: string[], versions: Version[]): string {
  for (const db of order) if (versions.some((v) => v.db === db)) return db;
  return latest(versions);
}

/** random: the seed picks among the changers in name order, so the log's seed and candidates reproduce the choice. */
export function randomPick(versions: Version[], seed: number): { db: string; candidates: string[] } {
  const candidates = versions.map((v) => v.db).sort(byName);
  return { db: candidates[seed % candidates.length]!, candidates };
}

/** What a user's conflict handler is shown: the sync, table, key and each version. */
export function handlerInput(c: Conflict): Record<string, unknown> {
  return {
    sync: c.sync,
    table: c.table,
    key: c.key,
    versions: c.versions.map((v) => ({ db: v.db, changed_at: v.changedAt, clock: v.clock, row: v.row })),
  };
}

/**
 * Settles conflicts. SQL handlers run in the metadata database; module
 * handlers are imported once.
 */
export class ConflictResolver {
  private readonly modules = new Map<string, Promise<(input: unknown) => unknown>>();

  constructor(
    private readonly conns: Connections,
    private readonly sync: SyncConfig,
  ) {}

  async decide(c: Conflict): Promise<{ rule: string; decision: Decision }> {
    const rule = ruleFor(this.sync, c.table);
    const name = ruleName(rule);
    const changers = c.versions.map((v) => v.db);
    let decision: Decision;
    if (Array.isArray(rule)) decision = { kind: 'winner', db: firstListed(rule, c.versions) };
    else if (typeof rule === 'object') decision = await this.runHandler(rule.handler, c);
    else {
      switch (rule) {
        case 'latest':
          decision = { kind: 'winner', db: latest(c.versions) };
          break;
        case 'source':
          decision = { kind: 'winner', db: firstListed(this.sync.sources, c.versions) };
          break;
        case 'target':
          decision = { kind: 'winner', db: firstListed([...this.sync.sources].reverse(), c.versions) };
          break;
        case 'random': {
          const seed = randomInt(0, 2 ** 31 - 1);
          const pick = randomPick(c.versions, seed);
          decision = { kind: 'winner', db: pick.db, detail: { seed, candidates: pick.candidates } };
          break;
        }
        case 'skip':
          decision = { kind: 'skipped' };
          break;
        case 'abort':
          throw new CapraError(
            `sync ${c.sync}: conflict on table ${c.table} key ${JSON.stringify(c.key)}, changed on ${changers.join(' and ')}, and the strategy is abort: ` +
              'settle it by hand (make the rows equal, then change the strategy or delete the older change) and run capra reload',
            { table: c.table },
          );
      }
    }
    return { rule: name, decision };
  }

  private async runHandler(h: HandlerRef, c: Conflict): Promise<Decision> {
    const input = handlerInput(c);
    let out: unknown;
    const where = `conflict handler ${handlerName(h)}`;
    try {
      if ('sql' in h) {
        const r = await this.conns.with(Connections.META, (m) =>
          m.query<{ r: string | null }>(`SELECT ${sqlFunction(h)}($1::jsonb)::text AS r`, [JSON.stringify(input)]),
        );
        const text = r.rows[0]?.r ?? null;
        if (text === null) throw new Error('returned SQL NULL (return a database name, a row as jsonb, or JSON null to delete the key)');
        out = JSON.parse(text);
      } else {
        out = await (await this.load(h.module))(input);
      }
    } catch (err) {
      throw new CapraError(`sync ${c.sync}: table ${c.table} key ${JSON.stringify(c.key)}: ${where} failed: ${errorMessage(err)}`, {
        cause: err,
        table: c.table,
      });
    }
    if (out === null) return { kind: 'deleted' };
    if (typeof out === 'string') {
      if (!c.versions.some((v) => v.db === out)) {
        throw new CapraError(
          `sync ${c.sync}: table ${c.table}: ${where} named ${JSON.stringify(out)}, which is not one of the databases that changed the key (${c.versions.map((v) => v.db).join(', ')})`,
          { table: c.table },
        );
      }
      return { kind: 'winner', db: out };
    }
    if (typeof out === 'object' && out !== null && !Array.isArray(out)) return { kind: 'merged', row: out as Record<string, unknown> };
    throw new CapraError(`sync ${c.sync}: table ${c.table}: ${where} returned ${JSON.stringify(out)}: expected a database name, a row object, or null`, {
      table: c.table,
    });
  }

  private load(path: string): Promise<(input: unknown) => unknown> {
    let p = this.modules.get(path);
    if (!p) {
      p = loadHandler(path);
      this.modules.set(path, p);
      p.catch(() => this.modules.delete(path));
    }
    return p;
  }
}
