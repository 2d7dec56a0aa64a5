import type pg from 'pg';
import { Connections } from '../db/connections.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { quoteIdent } from '../db/ident.js';
import { backoffMs } from '../util/backoff.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { controlChannel, parseControl, readPaused } from './control.js';
import { SessionLoop } from './session-loop.js';

/**
 * Which syncs are paused, as the active daemon last read them from the
 * metadata database. Until the first read every sync counts as paused: a
 * daemon that starts (or takes over) must not apply a paused sync's changes
 * before it has seen the pause. Kept by the Daemon across reloads.
 */
export class PauseGate {
  private paused = new Set<string>();
  private known = false;

  isPaused(sync: string): boolean {
    return !this.known || this.paused.has(sync);
  }

  /** Pauses syncs at once, ahead of the next read (which confirms it). */
  pause(syncs: string[]): string[] {
    const added = syncs.filter((s) => !this.paused.has(s));
    for (const s of added) this.paused.add(s);
    return added;
  }

  /** Back to unknown: a daemon that (re)gains the job lock reads the pauses before any run. */
  forget(): void {
    this.known = false;
  }

  /** Records what was read; returns the syncs that may run now and could not before (every one after the first read: null). */
  update(paused: Iterable<string>): { resumed: string[] | null; newlyPaused: string[] } {
    const next = new Set(paused);
    const wasKnown = this.known;
    const resumed = [...this.paused].filter((s) => !next.has(s));
    const newlyPaused = [...next].filter((s) => !this.paused.has(s));
    this.paused = next;
    this.known = true;
    return { resumed: wasKnown ? resumed : null, newlyPaused };
  }
}

export interface ControlHandlers {
  /** Run these syncs now (every one: null). */
  wake(syncs: string[] | null): void;
}

/**
 * The active daemon's end of the control channel (daemon/control.ts): LISTENs
 * in the metadata database, wakes the syncs a `capra kick` names, and keeps
 * the PauseGate current: read after every (re)connect (a NOTIFY sent while
 * away is lost), on every pause or resume, and once per node timeout as the
 * safety net. A resumed sync is woken at once, to catch up.
 */
export class ControlListener extends SessionLoop {
  private warnedNoTable = false;

  constructor(
    conns: Connections,
    private readonly job: string,
    private readonly gate: PauseGate,
    private readonly handlers: ControlHandlers,
    logger: Logger,
  ) {
    super(conns, Connections.META, logger);
  }

  protected async use(client: pg.Client, closed: Promise<void>): Promise<void> {
    client.on('notification', (m) => {
      const req = parseControl(m.payload);
      if (!req) return;
      if (req.op === 'kick') {
        this.logger.info({ syncs: req.syncs.length > 0 ? req.syncs : 'all' }, 'kicked');
        this.handlers.wake(req.syncs.length > 0 ? req.syncs : null);
      } else {
        // A pause holds from the moment it is heard, before the read that confirms it.
        if (req.op === 'pause') this.logPaused(this.gate.pause(req.syncs));
        void this.refresh(client).catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'cannot read the paused syncs'));
      }
    });
    await client.query(`LISTEN ${quoteIdent(controlChannel(this.job))}`);
    await this.refresh(client);
    const recheck = setInterval(() => void this.refresh(client).catch(() => {}), this.conns.timeoutMs);
    try {
      await closed;
    } finally {
      clearInterval(recheck);
    }
  }

  private async refresh(client: pg.Client): Promise<void> {
    let names: string[];
    try {
      names = (await readPaused(client)).map((p) => p.sync);
    } catch (err) {
      // A metadata database installed before pauses existed: nothing can be paused in it.
      if (sqlState(err) !== SQLSTATE.undefinedTable) throw err;
      if (!this.warnedNoTable) this.logger.warn('the metadata database has no repl.sync_pause table: run capra install to upgrade it');
      this.warnedNoTable = true;
      names = [];
    }
    const { resumed, newlyPaused } = this.gate.update(names);
    this.logPaused(newlyPaused);
    for (const sync of resumed ?? []) this.logger.info({ sync }, 'sync resumed');
    if (resumed === null) this.handlers.wake(null);
    else if (resumed.length > 0) this.handlers.wake(resumed);
  }

  private logPaused(syncs: string[]): void {
    for (const sync of syncs) this.logger.info({ sync }, 'sync paused: nothing is applied until capra resume');
  }

  protected retryDelayMs(failures: number): number {
    return backoffMs(Math.max(failures - 1, 0), 500, 10_000);
  }

  protected failed(err: unknown, failures: number): void {
    this.logger.warn({ err: errorMessage(err), attempt: failures }, 'cannot listen for control requests; retrying');
  }
}
