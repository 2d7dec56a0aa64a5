/**
 * Counting the rows of a COPY stream as it passes, for progress: the chunks
 * come as the socket delivers them, so a row (or a length field) may be
 * split across chunks.
 */
export type RowCounter = (chunk: Buffer) => number;

/** Text format: every row ends with a newline (newlines in values are escaped). */
export function textRowCounter(): RowCounter {
  return (chunk) => {
    let n = 0;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
    return n;
  };
}

/** The binary header before its extension length: signature (11 bytes) and flags (4). */
const BINARY_SIGNATURE_AND_FLAGS = 15;

/**
 * Binary format: a header (signature, flags, int32 extension length, the
 * extension), then per row an int16 field count and per field an int32
 * length (-1 for NULL) and that many bytes; the stream ends with a field
 * count of -1.
 */
export function binaryRowCounter(): RowCounter {
  /** Bytes still to skip: the header's start, its extension, or a field's value. */
  let skip = BINARY_SIGNATURE_AND_FLAGS;
  /** What the next integer is. */
  let next: 'extension' | 'count' | 'length' = 'extension';
  /** Fields left in the current row. */
  let fields = 0;
  let ended = false;
  /** The start of an integer split across chunks. */
  let partial: Buffer | null = null;

  return (chunk) => {
    let rows = 0;
    let buf = chunk;
    if (partial) {
      buf = Buffer.concat([partial, chunk]);
      partial = null;
    }
    let at = 0;
    while (at < buf.length && !ended) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length - at);
        skip -= n;
        at += n;
        continue;
      }
      const width = next === 'count' ? 2 : 4;
      if (buf.length - at < width) {
        partial = Buffer.from(buf.subarray(at));
        break;
      }
      if (next === 'count') {
        const count = buf.readInt16BE(at);
        if (count === -1) ended = true;
        else {
          rows++;
          fields = count;
          if (fields > 0) next = 'length';
        }
      } else {
        const n = buf.readInt32BE(at);
        if (n > 0) skip = n;
        if (next === 'extension' || --fields === 0) next = 'count';
      }
      at += width;
    }
    return rows;
  };
}
