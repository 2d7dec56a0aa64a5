import type pg from 'pg';
import { loadMigrationFiles, migrate } from 'postgres-migrations';
import { CapraError } from '../util/errors.js';
import { quoteIdent } from './ident.js';

/**
 * Runs one side's numbered migrations with postgres-migrations (5.3), its
 * bookkeeping kept in our table `repl.<side>_migrations`.
 *
 * The library has no setting for that: its table is always an unqualified
 * `migrations`, and it tests for one by name in every schema, so a user's
 * public.migrations would pass for ours (and a search_path would not help).
 * So the client we hand it knows every statement it sends, word for word:
 * its four bookkeeping statements are answered from our table, our own
 * migration files, its advisory lock and transaction control go through as
 * they are, and anything else is refused. A version that words anything
 * differently fails the install (and test/install.test.ts) with a message
 * saying so, instead of writing a `migrations` table somewhere.
 */

// What postgres-migrations 5.3 sends, exactly (dist/migrate.js, run-migration.js, with-lock.js, migrations/).
const LIBRARY_TABLE = 'migrations';
const TABLE_EXISTS = `SELECT EXISTS (
  SELECT 1
  FROM   pg_catalog.pg_class c
  WHERE  c.relname = $1
  AND    c.relkind = 'r'
);`;
const READ_ROWS = 'SELECT * FROM migrations ORDER BY id';
const RECORD_ROW = 'INSERT INTO migrations ("id", "name", "hash") VALUES ($1,$2,$3)';
const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS migrations (
  id integer PRIMARY KEY,
  name varchar(100) UNIQUE NOT NULL,
  hash varchar(40) NOT NULL, -- sha1 hex encoded hash of the file name and contents, to ensure it hasn't been altered since applying the migration
  executed_at timestamp DEFAULT current_timestamp
);
`;
const PASS_THROUGH = new Set([
  'SELECT pg_try_advisory_lock(-8525285245963000605);',
  'SELECT pg_advisory_unlock(-8525285245963000605);',
  'START TRANSACTION',
  'COMMIT',
  'ROLLBACK',
]);

export function bookkeepingTable(side: string): string {
  return `${side}_migrations`;
}

type Query = string | { text: string; values?: unknown[] };

interface BasicClient {
  query(q: Query): Promise<pg.QueryResult>;
}

/**
 * The client postgres-migrations talks to. `ours` are the texts of our own
 * migration files; `refused` keeps the first statement turned away, since
 * the library wraps errors in its own wording.
 */
export function bookkeepingClient(client: pg.ClientBase, schema: string, side: string, ours: Set<string>): BasicClient & { refused?: Error } {
  const table = `${quoteIdent(schema)}.${quoteIdent(bookkeepingTable(side))}`;
  const wrapper: BasicClient & { refused?: Error } = {
    async query(q) {
      const text = typeof q === 'string' ? q : q.text;
      const values = typeof q === 'string' ? [] : (q.values ?? []);
      const plain = values.length === 0;
      if (plain && (PASS_THROUGH.has(text) || ours.has(text))) return client.query(text);
      if (text === TABLE_EXISTS && values.length === 1 && values[0] === LIBRARY_TABLE) {
        return client.query('SELECT to_regclass($1) IS NOT NULL AS exists', [table]);
      }
      if (plain && text === READ_ROWS) return client.query(`SELECT * FROM ${table} ORDER BY id`);
      if (plain && text === CREATE_TABLE) {
        return client.query(`CREATE TABLE IF NOT EXISTS ${table} (
          id integer PRIMARY KEY, name varchar(100) UNIQUE NOT NULL, hash varchar(40) NOT NULL,
          executed_at timestamp DEFAULT current_timestamp)`);
      }
      if (text === RECORD_ROW && values.length === 3) return client.query(`INSERT INTO ${table} (id, name, hash) VALUES ($1, $2, $3)`, values);
      const first = text.trim().split('\n')[0]!.slice(0, 80);
      wrapper.refused ??= new CapraError(
        `postgres-migrations sent a statement capra does not know (its bookkeeping may have changed; capra expects version 5.3): ${first}`,
      );
      throw wrapper.refused;
    },
  };
  return wrapper;
}

/** Applies the migrations of `dir` not yet recorded in repl.<side>_migrations, each in its own transaction. */
export async function runSideMigrations(client: pg.ClientBase, schema: string, side: string, dir: string, log: (msg: string) => void): Promise<void> {
  // Id 0 is the library's own table, always; ours are numbered from 1.
  const ours = new Set((await loadMigrationFiles(dir)).filter((m) => m.id !== 0).map((m) => m.sql));
  const wrapper = bookkeepingClient(client, schema, side, ours);
  try {
    await migrate({ client: wrapper as unknown as pg.Client }, dir, { logger: log });
  } catch (err) {
    throw wrapper.refused ?? err;
  }
}
