/**
 * The bench's one table: a metric per row, Capra's and Bucardo's figures,
 * their ratio oriented so that above 1 means Capra does better, and the
 * target the issue set, with whether this run met it.
 */
export interface Row {
  metric: string;
  unit: 'TPS' | 'rows/s' | 'ms' | '%' | 's';
  capra: number | null;
  bucardo: number | null;
  /** Capra's figure as a share of a baseline (printed in brackets), e.g. TPS with triggers over TPS without. */
  capraShare?: number | null;
  bucardoShare?: number | null;
  /** higher: rates and TPS (ratio Capra / Bucardo); lower: latency and cost (ratio Bucardo / Capra); none: a reference row. */
  better: 'higher' | 'lower' | 'none';
  target?: string;
  met?: boolean | null;
}

/** The middle value (the mean of the two middle ones for an even count). */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export function ratio(r: Row): number | null {
  if (r.better === 'none' || r.capra === null || r.bucardo === null) return null;
  if (r.better === 'higher') return r.bucardo > 0 ? r.capra / r.bucardo : null;
  return r.capra > 0 ? r.bucardo / r.capra : null;
}

function figure(v: number | null, unit: Row['unit'], share?: number | null): string {
  if (v === null) return 'n/a';
  const digits = unit === 'ms' || unit === '%' || unit === 's' ? 1 : 0;
  const text = `${v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })}${unit === '%' ? '%' : ''}`;
  return share === undefined || share === null ? text : `${text} (${Math.round(share * 100)}%)`;
}

export function formatTable(rows: Row[]): string {
  const cells = rows.map((r) => {
    const x = ratio(r);
    return [
      `${r.metric}${r.unit === '%' ? '' : ` (${r.unit})`}`,
      figure(r.capra, r.unit, r.capraShare),
      figure(r.bucardo, r.unit, r.bucardoShare),
      x === null ? '' : `${x.toFixed(x < 10 ? 2 : 1)}x`,
      r.target === undefined ? '' : `${r.target}: ${r.met === null || r.met === undefined ? 'n/a' : r.met ? 'met' : 'MISSED'}`,
    ];
  });
  const head = ['metric', 'Capra', 'Bucardo', 'ratio', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string =>
    c
      .map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
