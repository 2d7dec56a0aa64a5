import type { Readable, Writable } from 'node:stream';

function countNewlines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

/**
 * Streams one COPY TO STDOUT into one or more COPY FROM STDIN streams: one
 * read of the source feeds every receiver, at the pace of the slowest. Any
 * failure (a stream's error, the signal) destroys every stream (the
 * receivers send CopyFail, so their COPY is undone) and rejects.
 */
export async function fanOut(
  src: Readable,
  dests: Writable[],
  /** Told of every chunk read: its bytes and COPY text rows (each ends with a newline; newlines in values are escaped). */
  onData: (bytes: number, rows: number) => void,
  signal: AbortSignal,
): Promise<void> {
  let fail!: (err: unknown) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {}); // observed through the race below
  const onError = (err: unknown): void => fail(err);
  const onAbort = (): void => fail(signal.reason ?? new Error('aborted'));
  const streams = [src, ...dests];
  for (const s of streams) s.on('error', onError);
  signal.addEventListener('abort', onAbort);
  if (signal.aborted) onAbort();

  const pump = async (): Promise<void> => {
    for await (const chunk of src) {
      const buf = chunk as Buffer;
      onData(buf.length, countNewlines(buf));
      let waiting: Promise<void>[] | null = null;
      for (const d of dests) {
        if (!d.write(buf)) (waiting ??= []).push(new Promise<void>((resolve) => d.once('drain', resolve)));
      }
      if (waiting) await Promise.race([Promise.all(waiting), failed]);
    }
    await Promise.all(dests.map((d) => new Promise<void>((resolve, reject) => d.end((err?: Error | null) => (err ? reject(err) : resolve())))));
  };
  const pumped = pump();
  pumped.catch(() => {}); // after a failure it may reject too; the failure is what counts
  try {
    await Promise.race([pumped, failed]);
  } catch (err) {
    src.destroy();
    for (const d of dests) if (!d.destroyed) d.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
    // Late errors from streams being torn down are expected; keep a listener so none is unhandled.
    for (const s of streams) {
      s.off('error', onError);
      s.on('error', () => {});
    }
  }
}
