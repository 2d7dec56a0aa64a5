import type { ClientConfig } from 'pg';

/**
 * Connection settings: a connect that gets no answer gives up after
 * timeoutMs, and TCP keepalives start after at most 10 s of quiet, so a
 * dead network path is noticed by the kernel (what they cannot see, a frozen
 * server whose kernel still answers, the watchdog sees: db/watchdog.ts).
 */
export function clientConfig(url: string, applicationName: string, timeoutMs = 10_000): ClientConfig {
  return {
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: timeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: Math.min(timeoutMs, 10_000),
  };
}
