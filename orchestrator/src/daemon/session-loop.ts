import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import { sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';

/**
 * Keeps one dedicated session to a database open until stopped: connects,
 * hands the session to `use` until it closes, and reconnects after a delay
 * when the server goes away or cannot be reached.
 */
export abstract class SessionLoop {
  protected stopping = false;
  private readonly abort = new AbortController();
  private client: pg.Client | null = null;
  private done: Promise<void> | null = null;

  constructor(
    protected readonly conns: Connections,
    protected readonly node: string,
    protected readonly logger: Logger,
  ) {}

  /**
   * Uses a connected session; `closed` resolves when it ends. Returns when
   * the session is done with (normally once `closed` resolved).
   */
  protected abstract use(client: pg.Client, closed: Promise<void>): Promise<void>;

  /** Delay before the next connection attempt, after `failures` failed ones in a row. */
  protected abstract retryDelayMs(failures: number): number;

  /** Says what failed; the loop retries. */
  protected abstract failed(err: unknown, failures: number): void;

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.client?.end().catch(() => {});
    await this.done;
  }

  /** A sleep that ends at once when the loop is stopped; false then. */
  protected pause(ms: number): Promise<boolean> {
    return sleep(ms, this.abort.signal);
  }

  private async loop(): Promise<void> {
    for (let failures = 0; !this.stopping; ) {
      try {
        const client = await this.conns.dedicated(this.node);
        this.client = client;
        const closed = new Promise<void>((resolve) => {
          client.once('end', resolve);
          client.once('error', () => resolve());
        });
        await this.use(client, closed);
        failures = 0;
      } catch (err) {
        failures++;
        if (!this.stopping) this.failed(err, failures);
      } finally {
        await this.client?.end().catch(() => {});
        this.client = null;
      }
      if (!this.stopping) await this.pause(this.retryDelayMs(failures));
    }
  }
}
