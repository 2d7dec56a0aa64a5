import type { Readable, Writable } from 'node:stream';

/**
 * Streams one COPY TO STDOUT into one or more COPY FROM STDIN streams: one
 * read of the source feeds every receiver (Readable.pipe to each, so the
 * source goes at the pace of the slowest), and resolves once every receiver
 * has finished its COPY. Any failure (a stream's error, the signal) destroys
 * every stream (the receivers send CopyFail, so their COPY is undone) and
 * rejects.
 */
export async function fanOut(
  src: Readable,
  dests: Writable[],
  /** Told of every chunk read (for progress). */
  onData: (chunk: Buffer) => void,
  signal: AbortSignal,
): Promise<void> {
  const streams = [src, ...dests];
  let onAbort!: () => void;
  let onError!: (err: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    onError = reject;
    onAbort = () => reject(signal.reason ?? new Error('aborted'));
  });
  failed.catch(() => {}); // observed through the race below
  for (const s of streams) s.on('error', onError);
  signal.addEventListener('abort', onAbort);
  if (signal.aborted) onAbort();
  const finished = Promise.all(dests.map((d) => new Promise<void>((resolve) => d.once('finish', resolve))));
  src.on('data', onData);
  for (const d of dests) src.pipe(d);
  try {
    await Promise.race([finished, failed]);
  } catch (err) {
    for (const d of dests) src.unpipe(d);
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
