import { readdirSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { usedDatabases } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { isConnectionError } from '../db/errors.js';
import { quoteIdent } from '../db/ident.js';
import { SCHEMA, type Side, migrationsDir, sideInstalled } from '../db/schema-side.js';
import { bookkeepingTable } from '../db/side-migrations.js';
import { CapraError } from '../util/errors.js';
import type { Problem } from './report.js';

/**
 * Migration levels: the highest migration this code ships for a side
 * (migrations/<side>/NNNNNN_*.sql) against the highest a database recorded
 * in repl.<side>_migrations. Older: `capra install` upgrades it. Newer: a
 * later capra installed it, and this one would misread tables it does not
 * know; only upgrading capra helps, so `capra start` refuses it too.
 */
export function codeLevel(side: Side): number {
  const ids = readdirSync(migrationsDir(side))
    .map((f) => /^(\d+)_.*\.sql$/.exec(f)?.[1])
    .filter((id): id is string => id !== undefined)
    .map(Number);
  return Math.max(0, ...ids);
}

/** The level recorded in the connected database, or null when the side is not installed there. */
async function nodeLevel(conns: Connections, db: string, side: Side): Promise<number | null> {
  return conns.with(db, async (c) => {
    if (!(await sideInstalled(c, side))) return null;
    const r = await c.query<{ level: number | null }>(`SELECT max(id)::int AS level FROM ${quoteIdent(SCHEMA)}.${quoteIdent(bookkeepingTable(side))}`);
    return r.rows[0]?.level ?? 0;
  });
}

interface Target {
  db: string;
  node: string;
  side: Side;
}

/** The metadata database (control side) and every database of `nodes` (capture side). */
function targets(nodes: string[]): Target[] {
  return [{ db: Connections.META, node: 'metadata', side: 'meta' as Side }, ...nodes.map((db) => ({ db, node: db, side: 'node' as Side }))];
}

function newerLine(t: Target, level: number, code: number): string {
  return `its ${t.side} schema is at migration level ${level}, newer than this capra's ${code}: upgrade capra to the version that installed it`;
}

/** Problems of migration level on the metadata database and on `nodes`. */
export async function migrationProblems(conns: Connections, nodes: string[]): Promise<Problem[]> {
  const out: Problem[] = [];
  for (const t of targets(nodes)) {
    const code = codeLevel(t.side);
    let level: number | null;
    try {
      level = await nodeLevel(conns, t.db, t.side);
    } catch (err) {
      out.push({ node: t.node, what: `cannot read its migration level: ${err instanceof Error ? err.message : String(err)}` });
      continue;
    }
    if (level === null) out.push({ node: t.node, what: `the ${t.side} side is not installed: run capra install` });
    else if (level < code)
      out.push({ node: t.node, what: `its ${t.side} schema is at migration level ${level}, older than this capra's ${code}: run capra install` });
    else if (level > code) out.push({ node: t.node, what: newerLine(t, level, code) });
  }
  return out;
}

/**
 * What `capra start` checks before it runs: no database of the job is at a
 * migration level newer than this code. A node that does not answer is left
 * to the daemon, which waits for it as for any node that is down.
 */
export async function refuseNewerNodes(cfg: Config, conns: Connections): Promise<void> {
  const checks = await Promise.allSettled(
    targets(usedDatabases(cfg)).map(async (t) => ({ t, level: await nodeLevel(conns, t.db, t.side), code: codeLevel(t.side) })),
  );
  for (const c of checks) {
    if (c.status === 'rejected') {
      if (isConnectionError(c.reason)) continue;
      throw c.reason;
    }
    const { t, level, code } = c.value;
    if (level !== null && level > code) throw new CapraError(`database ${t.node}: ${newerLine(t, level, code)}`, { node: t.node });
  }
}
