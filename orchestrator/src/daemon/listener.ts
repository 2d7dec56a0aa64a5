import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../db/errors.js';
import { quoteIdent } from '../db/ident.js';
import { backoffMs, sleep } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';

/**
 * LISTENs on one source node for the job's kick channel (capra_<job>), and
 * keeps doing so across restarts of that server: after every reconnect it
 * calls onKick once, since notifications sent while it was away are lost.
 */
export class KickListener {
  private client: pg.Client | null = null;
  private stopping = false;
  private readonly abort = new AbortController();
  private done: Promise<void> | null = null;

  constructor(
    private readonly conns: Connections,
    private readonly node: string,
    private readonly channel: string,
    private readonly onKick: () => void,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.client?.end().catch(() => {});
    await this.done;
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
        client.on('notification', () => this.onKick());
        await client.query(`LISTEN ${quoteIdent(this.channel)}`);
        if (failures > 0) this.logger.info({ node: this.node }, 'listening again');
        failures = 0;
        this.onKick();
        await closed;
        await client.end().catch(() => {});
        this.client = null;
        if (!this.stopping) this.logger.warn({ node: this.node }, 'lost the kick connection; reconnecting');
      } catch (err) {
        failures++;
        this.logger.warn({ node: this.node, err: errorMessage(err), attempt: failures }, 'cannot listen for kicks; retrying');
      }
      if (!this.stopping) await sleep(backoffMs(Math.max(failures - 1, 0), 500, 10_000), this.abort.signal);
    }
  }
}
