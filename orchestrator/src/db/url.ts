import type { ClientConfig } from 'pg';

// libpq-style URLs, with their passwords kept out of every message.

/** host:port/db, the form used in messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default db)';
    return `${u.hostname || 'localhost'}:${u.port || '5432'}/${db}`;
  } catch {
    return '<unparsable connection string>';
  }
}

export function databaseOf(url: string): string {
  const u = new URL(url);
  return decodeURIComponent(u.pathname.replace(/^\//, ''));
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

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
