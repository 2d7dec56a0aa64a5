import pg from 'pg';
import type { Config } from '../config/types.js';
import type { Logger } from '../util/logger.js';
import { NodeSilentError, connectError, isConnectionError } from './errors.js';
import { errorMessage } from '../util/errors.js';
import { clientConfig } from './url.js';
import { describeUrl } from '../util/url.js';
import { Watchdog } from './watchdog.js';

export type AppRole = 'capra-sync' | 'capra-cli' | 'capra-clone';

/** Clients whose connection we ended on purpose (discardConnection): their end is no news. */
const discarded = new WeakSet<object>();

/**
 * Ends a client's connection at once: its socket is destroyed, which the
 * server sees as a closed connection and answers by rolling back its
 * transaction. For a client whose COPY TO was torn down midway: it never
 * reads the rest of the COPY, so a ROLLBACK or a polite Terminate would wait
 * behind it for ever while the server, blocked sending, keeps its
 * transaction open. Its pending queries fail; release it as broken.
 */
export function discardConnection(client: pg.ClientBase): void {
  discarded.add(client);
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/** Whether the client's connection was ended by discardConnection. */
export function isDiscarded(client: pg.ClientBase): boolean {
  return discarded.has(client);
}

export interface ConnectionsOptions {
  /** How long a node may stay silent (connect, or a query waiting on it); default: the config's node_timeout_seconds. */
  timeoutMs?: number;
  /**
   * Before giving a silent connection up, ask its node on a new connection
   * whether it answers (a long statement may say nothing for a while).
   * Default true; false for callers whose statements are all quick (status).
   */
  probe?: boolean;
  /** Log when a node stops answering and when it answers again (the daemon). */
  reportHealth?: boolean;
}

/**
 * One pool per database of the job (and one for the metadata database), made
 * on first use. Every pool has an error listener: an idle client whose server
 * goes away must not crash the daemon. No wait on a node is unbounded: connects
 * time out, and a watchdog ends connections whose node has gone silent
 * (db/watchdog.ts).
 */
export class Connections {
  private readonly pools = new Map<string, pg.Pool>();
  /** Pooled clients that have their own error listener (added once per client). */
  private readonly guarded = new WeakSet<pg.PoolClient>();
  /** Pooled clients until their pool has ended their connection (its 'remove'), so close() can wait for that. */
  private readonly open = new Set<pg.PoolClient>();
  readonly timeoutMs: number;
  private readonly watchdog: Watchdog;
  /** Nodes seen not answering (reported once until they answer again). */
  private readonly silent = new Set<string>();

  constructor(
    private readonly cfg: Config,
    private readonly role: AppRole,
    private readonly logger: Logger,
    private readonly opts: ConnectionsOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? cfg.nodeTimeoutSeconds * 1000;
    this.watchdog = new Watchdog({
      timeoutMs: this.timeoutMs,
      ...(opts.probe === false ? {} : { probe: (db: string, withinMs: number) => this.probe(db, withinMs) }),
      onSilent: (db, err) => this.noteSilent(db, err.message),
      onLife: (db) => this.noteLife(db),
    });
  }

  /** The name a node goes by in messages. */
  private label(db: string): string {
    return db === Connections.META ? 'metadata' : db;
  }

  private noteSilent(db: string, error: string): void {
    if (this.silent.has(db)) return;
    this.silent.add(db);
    if (this.opts.reportHealth) this.logger.warn({ node: this.label(db), err: error }, 'node not answering');
  }

  private noteLife(db: string): void {
    if (!this.silent.delete(db)) return;
    if (this.opts.reportHealth) this.logger.info({ node: this.label(db) }, 'node answering again');
  }

  /** Notes the outcome of reaching a node: a connection failure is a node not answering, anything else a live one. */
  private noteAttempt(db: string, err?: unknown): void {
    if (err === undefined) this.noteLife(db);
    else if (isConnectionError(err)) this.noteSilent(db, errorMessage(err));
  }

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
      pool = new pg.Pool({ ...clientConfig(this.urlOf(db), this.role, this.timeoutMs), max: 8, idleTimeoutMillis: 30_000 });
      pool.on('error', (err, client) => {
        if (!discarded.has(client)) this.logger.warn({ node: db, err: errorMessage(err) }, 'idle connection failed');
      });
      pool.on('connect', (client) => {
        this.open.add(client);
        this.watchdog.watch(db, client);
      });
      pool.on('remove', (client) => this.open.delete(client));
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
      const e = connectError(this.label(db), this.display(db), err, this.timeoutMs);
      this.noteAttempt(db, e);
      throw e;
    }
    this.noteAttempt(db);
    // The pool listens for errors on idle clients only. A checked-out client
    // whose server goes away between two queries would otherwise raise an
    // uncaught 'error' and bring the daemon down; its next query fails instead.
    if (!this.guarded.has(client)) {
      client.on('error', (err) => {
        if (!discarded.has(client)) this.logger.warn({ node: db, err: errorMessage(err) }, 'connection lost');
      });
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
    const client = new pg.Client(clientConfig(this.urlOf(db), this.role, this.timeoutMs));
    client.on('error', (err) => this.logger.warn({ node: db, err: errorMessage(err) }, 'connection failed'));
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => {});
      const e = connectError(this.label(db), this.display(db), err, this.timeoutMs);
      this.noteAttempt(db, e);
      throw e;
    }
    this.noteAttempt(db);
    this.watchdog.watch(db, client);
    return client;
  }

  /**
   * Whether the node answers a query on a new connection within `withinMs`
   * (default: the timeout); rejects naming the node otherwise.
   */
  async probe(db: string, withinMs = this.timeoutMs): Promise<void> {
    const client = new pg.Client(clientConfig(this.urlOf(db), this.role, withinMs));
    client.on('error', () => {});
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<never>((_, reject) => {
      // Said as the node timeout: the watchdog asks after half of it was already silent.
      timer = setTimeout(() => reject(new NodeSilentError(this.label(db), this.timeoutMs)), withinMs);
    });
    const asked = (async () => {
      await client.connect();
      await client.query('SELECT 1');
    })();
    asked.catch(() => {}); // when the timer wins, this fails later, as the connection is destroyed
    try {
      await Promise.race([asked, silent]);
    } catch (err) {
      const e = isConnectionError(err) && !(err instanceof NodeSilentError) ? connectError(this.label(db), this.display(db), err, this.timeoutMs) : err;
      this.noteAttempt(db, e);
      throw e;
    } finally {
      clearTimeout(timer);
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      void client.end().catch(() => {});
    }
    this.noteAttempt(db);
  }

  async close(): Promise<void> {
    this.watchdog.stop();
    const pools = [...this.pools.values()];
    this.pools.clear();
    // Ended on purpose: a server that ends them first (uninstall's DROP
    // DATABASE ... WITH (FORCE), a shutdown) is no news. A pool's end does
    // not wait for its sessions to be gone; wait for that (a little), so a
    // DROP DATABASE that follows finds none of ours to end.
    for (const c of this.open) discarded.add(c);
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    const deadline = Date.now() + 2000;
    while (this.open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
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
