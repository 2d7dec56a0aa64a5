// Sizes as PostgreSQL's pg_size_bytes reads them: a whole number of bytes,
// or a number with a unit (kB, MB, GB, TB, PB, multiples of 1024, any case,
// a space allowed before it), so a size means the same in the config, on the
// command line and in SQL (repl.clone's drop_indexes_above).

const UNITS: Record<string, number> = { b: 1, bytes: 1, kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30, tb: 2 ** 40, pb: 2 ** 50 };

/** Bytes, or null when `v` is not a size (a negative one included). */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return null;
  const unit = UNITS[m[2]!.toLowerCase() || 'b'];
  if (unit === undefined) return null;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : null;
}

export const SIZE_EXAMPLE = 'a size such as 100MB, 1GB, 8kB or 0';
