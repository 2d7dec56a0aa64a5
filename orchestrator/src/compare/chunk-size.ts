/**
 * How many rows the next chunk takes, pt-table-checksum's way: the rate of
 * the chunks so far (rows per millisecond, weighted towards the recent ones)
 * times the time a chunk should take. Short chunks waste round trips; long
 * ones hold a query on every node for long and make a differing chunk
 * expensive to narrow.
 */
export class ChunkSizer {
  private rate: number | null = null;
  rows: number;

  constructor(
    private readonly targetMs = 250,
    first = 1_000,
    private readonly min = 100,
    private readonly max = 500_000,
  ) {
    this.rows = first;
  }

  /** A chunk of `rows` rows took `ms` (the slowest node). */
  observe(rows: number, ms: number): void {
    // The table's tail is a partial chunk: it says little about the rate.
    if (rows < this.rows / 2 || ms <= 0) return;
    const rate = rows / ms;
    this.rate = this.rate === null ? rate : 0.75 * rate + 0.25 * this.rate;
    this.rows = Math.round(Math.min(this.max, Math.max(this.min, this.rate * this.targetMs, this.rows / 4), this.rows * 4));
  }
}
