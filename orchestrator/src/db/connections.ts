import pg from 'pg';
import type { Config } from '../config/types.js';
import type { Logger } from '../util/logger.js';
import { connectError, errorMessage } from './errors.js';
import { clientConfig, describeUrl } from './url.js';

export type AppRole = 'capra-sync' | 'capra-cli' | 'capra-clone';

/**
 * One pool per database of the job (and one for the metadata database), made
 * on first use. Every pool has an error listener: an idle client whose server
 * goes away must not crash the daemon.
 */
export class Connections {
  private readonly pools = new Map<string, pg.Pool>();
  /** Pooled clients that have their own error listener (added once per client). */
  private readonly guarded = new WeakSet<pg.PoolClient>();

  constructor(
    private readonly cfg: Config,
    private readonly role: AppRole,
    private readonly logger: Logger,
  ) {}

  static readonly META = '(metadata)';

  urlOf(db: string): string {
    if (db === Connections.META) return this.cfg.metadata;
    const url = this.cfg.databases[db];
    if (!url) throw new Error(`unknown database ${db}`);
    return url;
  }

  /** host:port/dbname, never with a password. */
  display(db: string): string {
    return describeUrl(this.urlOf(db));
  }

  pool(db: string): pg.Pool {
    let pool = this.pools.get(db);
    if (!pool) {
      pool = new pg.Pool({ ...clientConfig(this.urlOf(db), this.role), max: 8, idleTimeoutMillis: 30_000 });
      pool.on('error', (err) => this.logger.warn({ node: db, err: errorMessage(err) }, 'idle connection failed'));
      this.pools.set(db, pool);
    }
    return pool;
  }

  /** A checked-out client; connection failures name the database, never its URL. */
  async connect(db: string): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.pool(db).connect();
    } catch (err) {
      throw connectError(db === Connections.META ? 'metadata' : db, this.display(db), err);
    }
    // The pool listens for errors on idle clients only. A checked-out client
    // whose server goes away between two queries would otherwise raise an
    // uncaught 'error' and bring the daemon down; its next query fails instead.
    if (!this.guarded.has(client)) {
      client.on('error', (err) => this.logger.warn({ node: db, err: errorMessage(err) }, 'connection lost'));
      this.guarded.add(client);
    }
    return client;
  }

  async with<T>(db: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect(db);
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      // A client left in an unknown state (aborted COPY, cancelled query) is not reused.
      broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** A dedicated, unpooled client (LISTEN, long transactions). */
  async dedicated(db: string): Promise<pg.Client> {
    const client = new pg.Client(clientConfig(this.urlOf(db), this.role));
    client.on('error', (err) => this.logger.warn({ node: db, err: errorMessage(err) }, 'connection failed'));
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => {});
      throw connectError(db === Connections.META ? 'metadata' : db, this.display(db), err);
    }
    return client;
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
  }
}

/** Run fn in a transaction on a checked-out client. */
export async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
