import { PassThrough, type Readable } from 'node:stream';

/**
 * One stream's chunks written to several branches at once, so that a
 * source's COPY out feeds every receiver's COPY in (a multi-master run's
 * receivers take the same rows). The source is paused while any branch is
 * full and resumed once every full one has drained: it runs at the pace of
 * the slowest branch, and memory holds at most about twice `highWaterMark`
 * per branch (the chunks are shared, not copied).
 *
 * A branch can be dropped (its receiver gave up, say its DELETE failed): it
 * gets no more chunks and no longer holds the source back. With every branch
 * dropped the source is read to its end and its chunks thrown away, which
 * leaves its connection ready for the next query. A branch that closes (its
 * reader's pipeline failed) is dropped too. When the source fails, the
 * branches are ended early without an error of their own (their readers see
 * a premature close); the caller learns the source's error from the source.
 */
export class Tee {
  readonly branches: PassThrough[];
  private readonly live: Set<PassThrough>;
  private readonly full = new Set<PassThrough>();

  constructor(
    private readonly source: Readable,
    count: number,
    highWaterMark?: number,
  ) {
    this.branches = Array.from({ length: count }, () => new PassThrough(highWaterMark === undefined ? {} : { highWaterMark }));
    this.live = new Set(this.branches);
    for (const b of this.branches) {
      b.on('drain', () => this.drained(b));
      b.once('close', () => this.drop(b));
    }
    source.on('data', (chunk: Buffer) => {
      for (const b of this.live) if (!b.write(chunk)) this.full.add(b);
      if (this.full.size > 0) source.pause();
    });
    source.once('end', () => {
      for (const b of this.live) b.end();
    });
    source.once('close', () => {
      for (const b of this.live) if (!b.writableEnded) b.destroy();
    });
  }

  /** Gives a branch no more chunks; the source no longer waits for it. */
  drop(branch: PassThrough): void {
    if (!this.live.delete(branch)) return;
    this.full.delete(branch);
    if (!branch.destroyed) branch.destroy();
    this.resumeIfFree();
  }

  private drained(branch: PassThrough): void {
    this.full.delete(branch);
    this.resumeIfFree();
  }

  private resumeIfFree(): void {
    if (this.full.size === 0 && this.source.isPaused()) this.source.resume();
  }
}
