import type { Connections } from '../db/connections.js';
import { sleep } from '../util/backoff.js';

/** How often a node left out of a multi-master sync is asked whether it answers again. */
export const DOWN_RETRY_MS = 5_000;

/**
 * The nodes of a multi-master sync that are left out of its runs, because
 * they refused, dropped or did not answer a connection. A run never waits on
 * them again: each is asked in the background, every DOWN_RETRY_MS, whether
 * it answers (a connect and a query, bounded by the node timeout), and when
 * it does it is taken back and `onBack` wakes the sync, which then gives it,
 * and takes from it, everything it missed.
 */
export class DownNodes {
  private readonly down = new Map<string, string>();
  private readonly asking = new Set<string>();

  constructor(
    private readonly conns: Connections,
    private readonly onBack: (db: string) => void,
    private readonly signal: AbortSignal,
    private readonly retryMs = DOWN_RETRY_MS,
  ) {}

  has(db: string): boolean {
    return this.down.has(db);
  }

  /** The error that put `db` out, if it is out. */
  error(db: string): string | undefined {
    return this.down.get(db);
  }

  get size(): number {
    return this.down.size;
  }

  /** Leaves `db` out of runs until it answers again. */
  mark(db: string, error: string): void {
    this.down.set(db, error);
    if (!this.asking.has(db)) void this.askUntilBack(db);
  }

  private async askUntilBack(db: string): Promise<void> {
    this.asking.add(db);
    try {
      while (this.down.has(db) && (await sleep(this.retryMs, this.signal))) {
        try {
          await this.conns.probe(db);
        } catch {
          continue;
        }
        this.down.delete(db);
        this.onBack(db);
      }
    } finally {
      this.asking.delete(db);
    }
  }
}
