/**
 * How big compare's next piece of a table is, pt-table-checksum's way: the
 * rate of the pieces so far (pages per millisecond, weighted towards the
 * recent ones) times the time a piece should take. Short pieces waste round
 * trips; long ones hold a query for long and show no progress meanwhile.
 */
export class ChunkSizer {
  private rate: number | null = null;
  /** The next piece's size, in pages. */
  size: number;

  constructor(
    private readonly targetMs = 250,
    first = 1_000,
    private readonly min = 16,
    private readonly max = 1_000_000,
  ) {
    this.size = first;
  }

  /** A piece of `size` pages took `ms`. */
  observe(size: number, ms: number): void {
    // The table's tail is a partial piece: it says little about the rate.
    if (size < this.size / 2 || ms <= 0) return;
    const rate = size / ms;
    this.rate = this.rate === null ? rate : 0.75 * rate + 0.25 * this.rate;
    this.size = Math.round(Math.min(this.max, Math.max(this.min, this.rate * this.targetMs, this.size / 4), this.size * 4));
  }
}
