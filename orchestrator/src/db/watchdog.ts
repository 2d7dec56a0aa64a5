import type pg from 'pg';
import { NodeSilentError } from './errors.js';

/**
 * Bounded waits on a node that hangs. A frozen server (SIGSTOP, a storage
 * stall) or a network path that drops packets without a reset never closes
 * the connection, and its kernel may still acknowledge our packets, so TCP
 * keepalives alone do not see it: a query would wait for ever.
 *
 * The watchdog looks at every connection that is waiting on its server (a
 * query, a COPY in either direction) and at the bytes moving on its socket:
 * bytes received, or bytes the kernel took from our send buffer, count as
 * life. A connection silent for half the timeout makes the watchdog ask the
 * node, on a new connection, whether it answers at all (a statement may
 * legitimately run long without a word: a big DELETE, an index build, a
 * lock wait); when the node answers, its silent connections are alive; when
 * it does not within the other half, they are destroyed with an error that
 * names the node, which fails the query waiting on them. So a hung node costs
 * a caller at most about the timeout, and a long statement is never cut.
 */

/** What a pg client exposes that the watchdog reads (the socket and whether a query is out). */
interface Inspectable {
  readyForQuery?: boolean;
  connection?: { stream?: Socketish };
}

interface Socketish {
  bytesRead: number;
  bytesWritten: number;
  writableLength: number;
  destroyed: boolean;
  destroy(err?: Error): void;
}

interface Watched {
  db: string;
  client: pg.ClientBase;
  /** bytes read, and bytes handed to the kernel, at the last look. */
  seen: [number, number];
  lastLife: number;
}

export interface WatchdogOptions {
  /** How long a node may stay silent, in ms. */
  timeoutMs: number;
  /**
   * Asks the node whether it answers, on a connection of its own, within the
   * given ms (rejects otherwise). Without it a silent connection is destroyed
   * after timeoutMs: for short-lived callers whose statements are all quick.
   */
  probe?: (db: string, withinMs: number) => Promise<void>;
  /** Told when a node stops answering (destroyed connections) and when it shows life again. */
  onSilent?: (db: string, err: NodeSilentError) => void;
  onLife?: (db: string) => void;
}

export class Watchdog {
  private readonly watched = new Set<Watched>();
  private readonly probing = new Map<string, Promise<boolean>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: WatchdogOptions) {}

  /** Watches a connected client until it ends. */
  watch(db: string, client: pg.ClientBase): void {
    const entry: Watched = { db, client, seen: counters(client), lastLife: Date.now() };
    this.watched.add(entry);
    client.once('end', () => this.watched.delete(entry));
    if (!this.timer) {
      const step = Math.min(1000, Math.max(50, Math.floor(this.opts.timeoutMs / 10)));
      this.timer = setInterval(() => this.tick(), step);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.watched.clear();
  }

  private tick(): void {
    const now = Date.now();
    const silentDbs = new Set<string>();
    for (const w of this.watched) {
      const c = w.client as unknown as Inspectable;
      const stream = c.connection?.stream;
      if (!stream || stream.destroyed) {
        this.watched.delete(w);
        continue;
      }
      const seen = counters(w.client);
      const heard = seen[0] !== w.seen[0];
      const moved = heard || seen[1] !== w.seen[1];
      w.seen = seen;
      if (heard) this.opts.onLife?.(w.db);
      // Idle connections may stay silent for as long as they like (LISTEN waits so).
      if (moved || c.readyForQuery !== false) {
        w.lastLife = now;
        continue;
      }
      const silentMs = now - w.lastLife;
      if (silentMs >= (this.opts.probe ? this.opts.timeoutMs / 2 : this.opts.timeoutMs)) silentDbs.add(w.db);
    }
    for (const db of silentDbs) {
      if (!this.opts.probe) this.kill(db);
      else if (!this.probing.has(db)) void this.probeThenAct(db);
    }
  }

  private async probeThenAct(db: string): Promise<void> {
    const asked = this.opts.probe!(db, this.opts.timeoutMs / 2).then(
      () => true,
      () => false,
    );
    this.probing.set(db, asked);
    try {
      if (await asked) {
        // The node answers: its quiet connections are busy, not hung.
        const now = Date.now();
        for (const w of this.watched) if (w.db === db) w.lastLife = now;
      } else {
        this.kill(db);
      }
    } finally {
      this.probing.delete(db);
    }
  }

  /** Destroys the node's connections that are waiting on it and have been silent for at least half the timeout. */
  private kill(db: string): void {
    const err = new NodeSilentError(db, this.opts.timeoutMs);
    const now = Date.now();
    let killed = 0;
    for (const w of this.watched) {
      const c = w.client as unknown as Inspectable;
      if (w.db !== db || c.readyForQuery !== false || now - w.lastLife < this.opts.timeoutMs / 2) continue;
      this.watched.delete(w);
      c.connection?.stream?.destroy(err);
      killed++;
    }
    if (killed > 0) this.opts.onSilent?.(db, err);
  }
}

/** Bytes received, and bytes the kernel has taken from our send buffer. */
function counters(client: pg.ClientBase): [number, number] {
  const s = (client as unknown as Inspectable).connection?.stream;
  if (!s) return [0, 0];
  return [s.bytesRead, s.bytesWritten - s.writableLength];
}
