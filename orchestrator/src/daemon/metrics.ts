import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../db/errors.js';
import { type Logger, silentLogger } from '../util/logger.js';

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
  errors: number;
  pendingRows: number | null;
  lagSeconds: number | null;
}

type Kind = 'gauge' | 'counter';
type Sample = [labels: [string, string][], value: number];

/** Label values escaped as the text format 0.0.4 asks: backslash, double quote, newline. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Plain code-unit order: the same on every machine, whatever the locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function laneKey(l: LaneLabels): string {
  return JSON.stringify([l.sync, l.source, l.target]);
}

/**
 * The daemon's Prometheus metrics, kept in memory and rendered in the text
 * exposition format 0.0.4. Lane series (sync, source, target) appear once a
 * lane reports anything, counters starting at 0, so a rate() has a baseline;
 * a pending count or lag that is not known is left out rather than shown as 0.
 */
export class Metrics {
  private readonly lanes = new Map<string, LaneSeries>();
  private readonly conflicts = new Map<string, number>();
  private active = false;
  private refreshSeconds: number | null = null;

  constructor(readonly job: string) {}

  private lane(l: LaneLabels): LaneSeries {
    const key = laneKey(l);
    let s = this.lanes.get(key);
    if (!s) {
      s = {
        labels: { sync: l.sync, source: l.source, target: l.target },
        runsOk: 0,
        runsError: 0,
        rowsApplied: 0,
        errors: 0,
        pendingRows: null,
        lagSeconds: null,
      };
      this.lanes.set(key, s);
    }
    return s;
  }

  /** One run of a lane ended. Rows count either way: batches before a failure were committed. */
  runFinished(lane: LaneLabels, result: { rows: number; error?: string }): void {
    const s = this.lane(lane);
    s.rowsApplied += result.rows;
    if (result.error === undefined) {
      s.runsOk++;
    } else {
      s.runsError++;
      s.errors++;
    }
  }

  /** Rows pending and lag of a lane; null when not known (the series is then omitted). */
  setPending(lane: LaneLabels, rows: number | null, lagSeconds: number | null): void {
    const s = this.lane(lane);
    s.pendingRows = rows;
    s.lagSeconds = lagSeconds;
  }

  /** 1 while this daemon holds the job lock and replicates, 0 in standby. */
  setActive(active: boolean): void {
    this.active = active;
  }

  /** Conflicts resolved so far in a sync, as recorded (a running total). */
  setConflicts(sync: string, n: number): void {
    this.conflicts.set(sync, n);
  }

  /** How long the last refresh before a scrape took (including one that failed or timed out). */
  setRefreshSeconds(seconds: number): void {
    this.refreshSeconds = seconds;
  }

  /**
   * Drops a lane's series (a reload removed it). The sync's conflicts series
   * goes too when this was the sync's last lane.
   */
  forgetLane(lane: LaneLabels): void {
    this.lanes.delete(laneKey(lane));
    if (![...this.lanes.values()].some((s) => s.labels.sync === lane.sync)) this.conflicts.delete(lane.sync);
  }

  render(): string {
    const job: [string, string] = ['job', this.job];
    const lanes = [...this.lanes.values()].sort(
      (a, b) => compare(a.labels.sync, b.labels.sync) || compare(a.labels.source, b.labels.source) || compare(a.labels.target, b.labels.target),
    );
    const laneLabels = (s: LaneSeries): [string, string][] => [job, ['sync', s.labels.sync], ['source', s.labels.source], ['target', s.labels.target]];
    const perLane = (value: (s: LaneSeries) => number | null): Sample[] =>
      lanes.flatMap((s): Sample[] => {
        const v = value(s);
        return v === null ? [] : [[laneLabels(s), v]];
      });

    const out: string[] = [];
    const family = (name: string, kind: Kind, help: string, samples: Sample[]): void => {
      out.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${kind}`);
      for (const [labels, value] of samples) {
        const ls = labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',');
        out.push(`${name}{${ls}} ${formatValue(value)}`);
      }
    };

    family('capra_active', 'gauge', '1 when this daemon holds the job lock and replicates, 0 in standby.', [[[job], this.active ? 1 : 0]]);
    family('capra_lag_seconds', 'gauge', 'Age in seconds of the oldest change on the source not yet applied on the target.', perLane((s) => s.lagSeconds));
    family('capra_rows_pending', 'gauge', 'Changed rows committed on the source and not yet applied on the target.', perLane((s) => s.pendingRows));
    family('capra_rows_applied_total', 'counter', 'Rows applied on the target by this daemon.', perLane((s) => s.rowsApplied));
    family(
      'capra_runs_total',
      'counter',
      'Runs of the lane by result (ok or error).',
      lanes.flatMap((s): Sample[] => [
        [[...laneLabels(s), ['result', 'error']], s.runsError],
        [[...laneLabels(s), ['result', 'ok']], s.runsOk],
      ]),
    );
    family('capra_errors_total', 'counter', 'Runs of the lane that failed.', perLane((s) => s.errors));
    family(
      'capra_conflicts_total',
      'counter',
      'Conflicts resolved in the sync.',
      [...this.conflicts.entries()].sort(([a], [b]) => compare(a, b)).map(([sync, n]): Sample => [[job, ['sync', sync]], n]),
    );
    family(
      'capra_scrape_refresh_seconds',
      'gauge',
      'Time taken reading pending rows and lag for the last scrape.',
      this.refreshSeconds === null ? [] : [[[job], this.refreshSeconds]],
    );
    return out.join('\n') + '\n';
  }
}

export interface MetricsServerOptions {
  metrics: Metrics;
  /** 0: any free port (the one chosen is returned). */
  port: number;
  /** Default 127.0.0.1: metrics stay on the host unless asked otherwise. */
  host?: string;
  /** Brings pending rows and lag up to date before each scrape. */
  refresh?: () => Promise<void>;
  /** How long a scrape waits for refresh before answering with the last values. Default 5000. */
  refreshTimeoutMs?: number;
  logger?: Logger;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

class RefreshTimeout extends Error {}

/**
 * Serves GET /metrics over HTTP. A scrape never hangs on, nor fails with, the
 * refresh: after an error or the timeout it answers with the last values.
 * Only one refresh runs at a time; scrapes arriving meanwhile wait on the same
 * one, so a stuck database cannot pile up queries.
 */
export async function serveMetrics(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, refresh } = opts;
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.refreshTimeoutMs ?? 5_000;
  const log = opts.logger ?? silentLogger;
  let inflight: Promise<void> | null = null;

  const refreshBounded = async (): Promise<void> => {
    if (!refresh) return;
    const started = performance.now();
    inflight ??= (async () => refresh())().finally(() => (inflight = null));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RefreshTimeout(`refresh took longer than ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([inflight, timeout]);
    } catch (err) {
      if (err instanceof RefreshTimeout) log.warn({ timeoutMs }, 'metrics refresh timed out: serving the last values');
      else log.warn({ err: errorMessage(err) }, 'metrics refresh failed: serving the last values');
    } finally {
      clearTimeout(timer);
      metrics.setRefreshSeconds(Math.round(performance.now() - started) / 1000);
    }
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET' }).end('method not allowed: use GET\n');
      return;
    }
    await refreshBounded();
    const body = metrics.render();
    res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) }).end(body);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err: errorMessage(err) }, 'metrics request failed');
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new Error(`could not serve metrics on ${host}:${opts.port}: ${err.message}; choose another metrics port`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err: errorMessage(err) }, 'metrics server error'));
  const port = (server.address() as AddressInfo).port;
  log.info({ host, port }, 'serving metrics');

  let closed: Promise<void> | null = null;
  return {
    port,
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Scrapers keep connections alive; a scrape in progress still gets its answer.
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
