import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import { errorMessage } from '../util/errors.js';
import { quoteIdent } from '../db/ident.js';
import { backoffMs } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import { SessionLoop } from './session-loop.js';

/**
 * LISTENs on one source node for the job's kick channel (capra_<job>), and
 * keeps doing so across restarts of that server: after every (re)connect it
 * calls onKick once, since notifications sent while it was away are lost.
 * An idle LISTEN session never learns that its node hung or that the network
 * path went silent, so it asks the node something once per node timeout: an
 * unanswered question ends the session (the watchdog) and it reconnects.
 */
export class KickListener extends SessionLoop {
  private reconnecting = false;

  constructor(
    conns: Connections,
    node: string,
    private readonly channel: string,
    private readonly onKick: () => void,
    logger: Logger,
  ) {
    super(conns, node, logger);
  }

  protected async use(client: pg.Client, closed: Promise<void>): Promise<void> {
    client.on('notification', () => this.onKick());
    await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    if (this.reconnecting) this.logger.info({ node: this.node }, 'listening again');
    this.reconnecting = true;
    this.onKick();
    const heartbeat = setInterval(() => void client.query('SELECT 1').catch(() => {}), this.conns.timeoutMs);
    try {
      await closed;
    } finally {
      clearInterval(heartbeat);
    }
    if (!this.stopping) this.logger.warn({ node: this.node }, 'lost the kick connection; reconnecting');
  }

  protected retryDelayMs(failures: number): number {
    return backoffMs(Math.max(failures - 1, 0), 500, 10_000);
  }

  protected failed(err: unknown, failures: number): void {
    this.logger.warn({ node: this.node, err: errorMessage(err), attempt: failures }, 'cannot listen for kicks; retrying');
  }
}
