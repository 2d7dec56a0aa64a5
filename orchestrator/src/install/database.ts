import pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { quoteIdent } from '../db/ident.js';
import { clientConfig } from '../db/url.js';
import { databaseOf, describeUrl, withDatabase } from '../util/url.js';

// Creating and dropping the job's metadata database, from another database on
// the same server (the maintenance database, or a fallback the caller names).

async function onServer<T>(url: string, fallbacks: string[], fn: (c: pg.Client) => Promise<T>): Promise<T> {
  let lastErr: unknown;
  for (const db of ['postgres', 'template1', ...fallbacks]) {
    const c = new pg.Client(clientConfig(withDatabase(url, db), 'capra-cli'));
    c.on('error', () => {});
    try {
      await c.connect();
    } catch (err) {
      lastErr = err;
      await c.end().catch(() => {});
      continue;
    }
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => {});
    }
  }
  throw new CapraError(`cannot reach the server of ${describeUrl(url)} to create or drop its database: ${errorMessage(lastErr)}`, { cause: lastErr });
}

/**
 * Creates the database of `url` unless it exists; returns whether it was
 * created now. `where` adds to messages which server this is, in the
 * config's terms (e.g. "on the server of database a").
 */
export async function ensureDatabase(url: string, fallbacks: string[], where?: string): Promise<boolean> {
  const probe = new pg.Client(clientConfig(url, 'capra-cli'));
  probe.on('error', () => {});
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.invalidCatalogName) {
      const at = where ? `${describeUrl(url)}, ${where}` : describeUrl(url);
      throw new CapraError(`cannot connect to the metadata database (${at}): ${errorMessage(err)}`, { cause: err });
    }
  } finally {
    await probe.end().catch(() => {});
  }
  return onServer(url, fallbacks, async (c) => {
    try {
      await c.query(`CREATE DATABASE ${quoteIdent(databaseOf(url))}`);
      return true;
    } catch (err) {
      // Another install created it at the same moment.
      if (sqlState(err) === SQLSTATE.duplicateDatabase || sqlState(err) === SQLSTATE.uniqueViolation) return false;
      throw new CapraError(`cannot create the metadata database ${databaseOf(url)}: ${errorMessage(err)}`, { cause: err });
    }
  });
}

export async function dropDatabase(url: string, fallbacks: string[]): Promise<void> {
  await onServer(url, fallbacks, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(databaseOf(url))} WITH (FORCE)`);
  });
}
