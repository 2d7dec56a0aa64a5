import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { migrate } from 'postgres-migrations';
import type { Logger } from '../util/logger.js';
import { packageRoot } from '../util/paths.js';
import { inTransaction } from './connections.js';
import { quoteIdent } from './ident.js';
import { refreshKicks } from './kick-timing.js';

/**
 * The two sets of database objects Capra installs, both in schema `repl`:
 * `node` (capture side, on every replicated database) and `meta` (control
 * side, in the job's metadata database). One database may hold both.
 *
 * Tables come from numbered, immutable files in migrations/<side>, run by
 * postgres-migrations; functions from extension/<side>, re-applied on every
 * install. Uninstall drops exactly the objects those files create.
 */
export type Side = 'node' | 'meta';

export const SCHEMA = 'repl';

/** Session-level advisory lock key (two-int form) serialising install/uninstall of one side per database. */
const LOCK_CLASS = 0x43617072; // "Capr"
const lockKey = (side: Side): number => (side === 'node' ? 1 : 2);

export function bookkeepingTable(side: Side): string {
  return `${side}_migrations`;
}

/** The .sql files of a directory, in name order; none when it does not exist (git keeps no empty directory). */
function sqlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((f) => path.join(dir, f));
}

export function migrationsDir(side: Side): string {
  return path.join(packageRoot(), 'migrations', side);
}

export function extensionFiles(side: Side): string[] {
  return sqlFiles(path.join(packageRoot(), 'extension', side));
}

/** Names of the tables the side's migrations create (read from the files, so it cannot drift). */
export function sideTables(side: Side): string[] {
  const names: string[] = [];
  for (const f of sqlFiles(migrationsDir(side))) {
    for (const m of readFileSync(f, 'utf8').matchAll(/CREATE TABLE (?:IF NOT EXISTS )?repl\.(\w+)/gi)) names.push(m[1]!);
  }
  return names;
}

/** Names of the views the side's migrations create (dropped before the tables they read). */
export function sideViews(side: Side): string[] {
  const names: string[] = [];
  for (const f of sqlFiles(migrationsDir(side))) {
    for (const m of readFileSync(f, 'utf8').matchAll(/CREATE (?:OR REPLACE )?VIEW repl\.(\w+)/gi)) names.push(m[1]!);
  }
  return names;
}

/** Names of the functions the side's extension files create. */
export function sideFunctions(side: Side): string[] {
  const names = new Set<string>();
  for (const f of extensionFiles(side)) {
    for (const m of readFileSync(f, 'utf8').matchAll(/CREATE OR REPLACE FUNCTION repl\.(\w+)\s*\(/gi)) names.add(m[1]!);
  }
  return [...names];
}

/**
 * postgres-migrations (5.3) keeps its bookkeeping in an unqualified table
 * `migrations` and tests for it by name in *any* schema. We want it in our
 * schema, one per side, and unaffected by a user's own `migrations` table, so
 * this client wrapper redirects exactly its four bookkeeping statements and
 * passes everything else (our migration files) through unchanged.
 */
function bookkeepingClient(client: pg.ClientBase, side: Side): { query: (q: string | pg.QueryConfig) => Promise<pg.QueryResult> } {
  const table = `${SCHEMA}.${bookkeepingTable(side)}`;
  return {
    async query(q) {
      const text = typeof q === 'string' ? q : q.text;
      const values = typeof q === 'string' ? undefined : q.values;
      if (text.includes('pg_catalog.pg_class') && values?.[0] === 'migrations') {
        const r = await client.query('SELECT to_regclass($1) IS NOT NULL AS exists', [table]);
        return r;
      }
      if (/^\s*SELECT \* FROM migrations ORDER BY id\s*$/.test(text)) {
        return client.query(`SELECT * FROM ${table} ORDER BY id`);
      }
      if (/CREATE TABLE IF NOT EXISTS migrations \(/.test(text)) {
        return client.query(text.replace('CREATE TABLE IF NOT EXISTS migrations (', `CREATE TABLE IF NOT EXISTS ${table} (`));
      }
      if (/^\s*INSERT INTO migrations /.test(text)) {
        return client.query(text.replace(/^\s*INSERT INTO migrations /, `INSERT INTO ${table} `), values as unknown[]);
      }
      return typeof q === 'string' ? client.query(q) : client.query(q);
    },
  };
}

async function withSideLock<T>(client: pg.ClientBase, side: Side, fn: () => Promise<T>): Promise<T> {
  await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, lockKey(side)]);
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, lockKey(side)]).catch(() => {});
  }
}

/** Create or upgrade one side in the connected database. Harmless to repeat, safe to run concurrently. */
export async function installSide(client: pg.ClientBase, side: Side, logger: Logger): Promise<void> {
  await withSideLock(client, side, async () => {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(SCHEMA)}`);
    await migrate({ client: bookkeepingClient(client, side) as unknown as pg.Client }, migrationsDir(side), {
      logger: (msg: string) => logger.debug({ side }, msg),
    });
    await inTransaction(client, async () => {
      for (const f of extensionFiles(side)) await client.query(readFileSync(f, 'utf8'));
      // The per-table kick functions are generated: regenerate them, so an upgrade's new body takes effect.
      if (side === 'node') await refreshKicks(client);
    });
  });
}

/** True when the side is installed in the connected database. */
export async function sideInstalled(client: pg.ClientBase, side: Side): Promise<boolean> {
  const r = await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [`${SCHEMA}.${bookkeepingTable(side)}`]);
  return r.rows[0].ok === true;
}

/**
 * Drop exactly what installSide created; the schema goes too once nothing of
 * the other side (or anything else) is left in it. Callers drop triggers first.
 */
export async function uninstallSide(client: pg.ClientBase, side: Side): Promise<void> {
  await withSideLock(client, side, () =>
    inTransaction(client, async () => {
      if (side === 'node') {
        // Per-table functions generated by repl.make_capture / repl.make_kick (add-triggers).
        const gen = await client.query<{ f: string }>(
          `SELECT p.oid::regprocedure::text AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $1 AND p.proname ~ '^(capture|kick)_[0-9]+$'`,
          [SCHEMA],
        );
        for (const { f } of gen.rows) await client.query(`DROP FUNCTION IF EXISTS ${f}`);
        // The kick clocks repl.make_kick creates beside them.
        const clocks = await client.query<{ s: string }>(
          `SELECT c.oid::regclass::text AS s FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'S' AND c.relname ~ '^kick_clock_[0-9]+$'`,
          [SCHEMA],
        );
        for (const { s } of clocks.rows) await client.query(`DROP SEQUENCE IF EXISTS ${s}`);
      }
      for (const fn of sideFunctions(side)) {
        await client.query(`DROP FUNCTION IF EXISTS ${quoteIdent(SCHEMA)}.${quoteIdent(fn)}`);
      }
      for (const v of sideViews(side).reverse()) await client.query(`DROP VIEW IF EXISTS ${quoteIdent(SCHEMA)}.${quoteIdent(v)}`);
      // Newest first: a table may reference (foreign key) only tables created before it.
      for (const t of [...sideTables(side).reverse(), bookkeepingTable(side)]) {
        await client.query(`DROP TABLE IF EXISTS ${quoteIdent(SCHEMA)}.${quoteIdent(t)}`);
      }
      const left = await client.query(
        `SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = n.oid)
              + (SELECT count(*) FROM pg_proc WHERE pronamespace = n.oid)
              + (SELECT count(*) FROM pg_type WHERE typnamespace = n.oid AND typtype <> 'b') AS n
           FROM pg_namespace n WHERE nspname = $1`,
        [SCHEMA],
      );
      if (left.rows.length > 0 && Number(left.rows[0].n) === 0) await client.query(`DROP SCHEMA ${quoteIdent(SCHEMA)}`);
    }),
  );
}
