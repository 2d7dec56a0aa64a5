import { Counter, Gauge, type LabelValues, Registry } from 'prom-client';

/** One lane: changes of `sync` flowing from `source` to `target`. */
export interface LaneLabels {
  sync: string;
  source: string;
  target: string;
}

interface LaneSeries {
  labels: LaneLabels;
  runsOk: number;
  runsError: number;
  rowsApplied: number;
  pendingRows: number | null;
  lagSeconds: number | null;
}

type Samples<L extends string> = [LabelValues<L>, number][];

const LANE = ['job', 'sync', 'source', 'target'] as const;
type Lane = (typeof LANE)[number];

/** Plain code-unit order: the same on every machine, whatever the locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function laneKey(l: LaneLabels): string {
  return JSON.stringify([l.sync, l.source, l.target]);
}

/**
 * A metric whose series are written afresh from `samples` at every scrape, in
 * the order given. prom-client calls collect just before it reads the series;
 * after the reset, inc sets a gauge's series as it does a counter's.
 */
function scraped<L extends string>(
  registry: Registry,
  kind: 'counter' | 'gauge',
  name: string,
  help: string,
  labelNames: readonly L[],
  samples: () => Samples<L>,
): Counter<L> | Gauge<L> {
  function collect(this: Counter<L> | Gauge<L>): void {
    this.reset();
    for (const [labels, v] of samples()) this.inc(labels, v);
  }
  const config = { name, help, labelNames, registers: [registry], collect };
  return kind === 'gauge' ? new Gauge<L>(config) : new Counter<L>(config);
}

/**
 * The daemon's Prometheus metrics, in a registry of its own: two daemons in
 * one process (as the tests run them) never share a series. Runs are tallied
 * here per lane and handed to prom-client by each metric's collect callback
 * at scrape time, with the pending rows and lag the last refresh read. That
 * keeps the series sorted by sync, source and target whatever order the lanes
 * first reported in (prom-client lists series in the order they were first
 * touched), and lets a reload forget a lane whole. A lane's series appear once
 * it reports anything, counters starting at 0, so a rate() has a baseline; a
 * pending count or lag that is not known is left out rather than shown as 0.
 * Failed runs are capra_runs_total{result="error"}, not a metric of their own.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly lanes = new Map<string, LaneSeries>();
  private readonly conflicts = new Map<string, number>();
  private readonly active: Gauge<'job'>;
  private readonly refreshSeconds: Gauge<'job'>;
  /** sync -> the last scheduled compare: when, and rows differing per table and node. */
  private readonly compares = new Map<string, { at: number; rows: [string, string, number][] }>();

  constructor(readonly job: string) {
    const registers = [this.registry];
    // Registered in the order the families are listed.
    this.active = new Gauge({
      name: 'capra_active',
      help: '1 when this daemon holds the job lock and replicates, 0 in standby.',
      labelNames: ['job'],
      registers,
    });
    this.active.set({ job }, 0);
    const perLane = (value: (s: LaneSeries) => number | null) => (): Samples<Lane> =>
      this.sorted().flatMap((s): Samples<Lane> => {
        const v = value(s);
        return v === null ? [] : [[{ job, ...s.labels }, v]];
      });
    scraped(
      this.registry,
      'gauge',
      'capra_lag_seconds',
      'Age in seconds of the oldest change on the source not yet applied on the target.',
      LANE,
      perLane((s) => s.lagSeconds),
    );
    scraped(
      this.registry,
      'gauge',
      'capra_rows_pending',
      'Changed rows committed on the source and not yet applied on the target.',
      LANE,
      perLane((s) => s.pendingRows),
    );
    scraped(
      this.registry,
      'counter',
      'capra_rows_applied_total',
      'Rows applied on the target by this daemon.',
      LANE,
      perLane((s) => s.rowsApplied),
    );
    scraped(this.registry, 'counter', 'capra_runs_total', 'Runs of the lane by result (ok or error).', [...LANE, 'result'], () =>
      this.sorted().flatMap(
        (s): Samples<Lane | 'result'> => [
          [{ job, ...s.labels, result: 'error' }, s.runsError],
          [{ job, ...s.labels, result: 'ok' }, s.runsOk],
        ],
      ),
    );
    scraped(this.registry, 'counter', 'capra_conflicts_total', 'Conflicts resolved in the sync.', ['job', 'sync'], () =>
      [...this.conflicts.entries()].sort(([a], [b]) => compare(a, b)).map(([sync, n]) => [{ job, sync }, n]),
    );
    this.refreshSeconds = new Gauge({
      name: 'capra_scrape_refresh_seconds',
      help: 'Time taken reading pending rows and lag for the last scrape.',
      labelNames: ['job'],
      registers,
    });
  }

  private sorted(): LaneSeries[] {
    return [...this.lanes.values()].sort(
      (a, b) => compare(a.labels.sync, b.labels.sync) || compare(a.labels.source, b.labels.source) || compare(a.labels.target, b.labels.target),
    );
  }

  private lane(l: LaneLabels): LaneSeries {
    const key = laneKey(l);
    let s = this.lanes.get(key);
    if (!s) {
      s = { labels: { sync: l.sync, source: l.source, target: l.target }, runsOk: 0, runsError: 0, rowsApplied: 0, pendingRows: null, lagSeconds: null };
      this.lanes.set(key, s);
    }
    return s;
  }

  /** One run of a lane ended. Rows count either way: batches before a failure were committed. */
  runFinished(lane: LaneLabels, result: { rows: number; error?: string }): void {
    const s = this.lane(lane);
    s.rowsApplied += result.rows;
    if (result.error === undefined) s.runsOk++;
    else s.runsError++;
  }

  /** Rows pending and lag of a lane; null when not known (the series is then omitted). */
  setPending(lane: LaneLabels, rows: number | null, lagSeconds: number | null): void {
    const s = this.lane(lane);
    s.pendingRows = rows;
    s.lagSeconds = lagSeconds;
  }

  /** 1 while this daemon holds the job lock and replicates, 0 in standby. */
  setActive(active: boolean): void {
    this.active.set({ job: this.job }, active ? 1 : 0);
  }

  /** Conflicts resolved so far in a sync, as recorded (a running total). */
  setConflicts(sync: string, n: number): void {
    this.conflicts.set(sync, n);
  }

  /**
   * A scheduled compare of a sync finished: rows differing per table and
   * node, and when. The two families are registered at the first one, so a
   * job without scheduled compares exposes exactly what it did before.
   */
  setCompare(sync: string, rows: [table: string, node: string, differing: number][], at: Date): void {
    if (this.compares.size === 0) {
      const sorted = (): [string, { at: number; rows: [string, string, number][] }][] => [...this.compares.entries()].sort(([a], [b]) => compare(a, b));
      scraped(
        this.registry,
        'gauge',
        'capra_compare_differing_rows',
        'Rows that differed from the reference (missing, extra or different) at the last scheduled compare.',
        ['job', 'sync', 'table', 'node'],
        () =>
          sorted().flatMap(([sync, c]) =>
            c.rows.map(([table, node, n]): [LabelValues<'job' | 'sync' | 'table' | 'node'>, number] => [{ job: this.job, sync, table, node }, n]),
          ),
      );
      scraped(
        this.registry,
        'gauge',
        'capra_compare_last_run_timestamp_seconds',
        'When the last scheduled compare of the sync finished (Unix time).',
        ['job', 'sync'],
        () => sorted().map(([sync, c]) => [{ job: this.job, sync }, c.at]),
      );
    }
    this.compares.set(sync, { at: at.getTime() / 1000, rows });
  }

  /** How long the last refresh before a scrape took (including one that failed or timed out). */
  setRefreshSeconds(seconds: number): void {
    this.refreshSeconds.set({ job: this.job }, seconds);
  }

  /**
   * Drops a lane's series (a reload removed it). The sync's conflicts series
   * goes too when this was the sync's last lane.
   */
  forgetLane(lane: LaneLabels): void {
    this.lanes.delete(laneKey(lane));
    if (![...this.lanes.values()].some((s) => s.labels.sync === lane.sync)) this.conflicts.delete(lane.sync);
  }

  /**
   * The text exposition format 0.0.4, one family after the other: prom-client's
   * metrics() would put a blank line between them, which scrapers ignore; this
   * keeps the text byte for byte what the daemon has always served.
   */
  async render(): Promise<string> {
    const families = await Promise.all(this.registry.getMetricsAsArray().map((m) => this.registry.getSingleMetricAsString(m.name)));
    return `${families.join('\n')}\n`;
  }
}
