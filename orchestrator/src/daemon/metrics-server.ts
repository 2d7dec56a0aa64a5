import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { errorMessage } from '../util/errors.js';
import { type Logger, silentLogger } from '../util/logger.js';
import type { Metrics } from './metrics.js';

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

export const METRICS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

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
    const body = await metrics.render();
    res.writeHead(200, { 'Content-Type': metrics.registry.contentType, 'Content-Length': Buffer.byteLength(body) }).end(body);
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
