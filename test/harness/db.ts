// Helpers for test files: the clusters started by run-suite, fresh databases
// per test, one-shot queries and the polling barrier used instead of sleeps.
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { quoteIdent } from '../../orchestrator/src/db/ident.js';
import { type Cluster, startCluster } from '../../orchestrator/src/embedded/cluster.js';

export interface ClusterInfo {
  name: string;
  port: number;
  host: string;
  user: string;
  major: number;
  binDir: string;
}

export interface TestClusters {
  clusters: ClusterInfo[];
  other: ClusterInfo | null;
  otherSkipReason?: string;
}

/** The subset of a tap Test that freshDb needs (works for the root `t` too). */
export interface TeardownTest {
  teardown(fn: () => unknown): unknown;
  passing(): boolean;
  comment(...args: unknown[]): unknown;
}

export const STATE_ENV = 'CAPRA_TEST_CLUSTERS';

let cached: TestClusters | undefined;

export function testClusters(): TestClusters {
  if (cached) return cached;
  const file = process.env[STATE_ENV];
  if (!file) {
    throw new Error(`${STATE_ENV} is not set: run tests through \`npm test\` (it starts the PostgreSQL clusters)`);
  }
  cached = JSON.parse(readFileSync(file, 'utf8')) as TestClusters;
  return cached;
}

export function urlFor(cluster: ClusterInfo, db: string): string {
  return `postgres://${encodeURIComponent(cluster.user)}@${cluster.host}:${cluster.port}/${encodeURIComponent(db)}`;
}

/**
 * Create a uniquely named database on `cluster` and drop it when `t` ends,
 * unless `t` failed: then it is kept for inspection and its name printed.
 * `template` clones a prepared (e.g. migrated) database instead of template1.
 */
export async function freshDb(t: TeardownTest, cluster: ClusterInfo, prefix = 't', opts: { template?: string } = {}): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const admin = urlFor(cluster, 'postgres');
  const template = opts.template ? ` TEMPLATE ${quoteIdent(opts.template)}` : '';
  await sql(admin, `CREATE DATABASE ${quoteIdent(name)}${template}`);
  t.teardown(async () => {
    if (!t.passing()) {
      t.comment(`keeping database ${name} on ${cluster.name} (port ${cluster.port}) because the test failed`);
      return;
    }
    await sql(admin, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
  return urlFor(cluster, name);
}

export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'capra-test' });
  // Without a listener, a server-side disconnect would crash the test process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params?: unknown[]): Promise<R[]> {
  return withClient(url, async (c) => (await c.query<R>(text, params)).rows);
}

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Describes the condition, for the timeout error. */
  what: string;
}

/**
 * Poll `fn` until it returns true: the "caught up" barrier. Errors thrown by
 * `fn` propagate at once (a broken check should fail, not time out).
 */
export async function waitFor(fn: () => Promise<boolean>, { timeoutMs = 30_000, intervalMs = 50, what }: WaitForOptions): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() >= deadline) throw new Error(`Timed out waiting for ${what} (after ${timeoutMs} ms)`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface OwnCluster {
  info: ClusterInfo;
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /**
   * Freezes the server as a hung machine would be: SIGSTOP to the postmaster
   * and every backend. Its kernel still accepts connections and acknowledges
   * packets; nothing answers. Thawed (SIGCONT) by thaw(), and in any case
   * before anything else when the test ends.
   */
  freeze(t: TeardownTest): void;
  thaw(): void;
}

/** The processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // the process went away meanwhile
    }
  }
  return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * A server of the test's own, for tests that stop, restart or reconfigure
 * one. Call it before makeJob: tap runs teardowns newest first, so the job's
 * databases on it are dropped before the server is stopped and removed.
 */
export async function ownCluster(t: TeardownTest, binDir: string): Promise<OwnCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-own-'));
  const dataDir = path.join(dir, 'data');
  let server: Cluster | null = await startCluster({ binDir, dataDir });
  const port = server.port;
  let frozen: number[] = [];
  const thaw = (): void => {
    signalAll(frozen, 'SIGCONT');
    frozen = [];
  };
  t.teardown(async () => {
    thaw();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    info: { name: 'own', port, host: server.host, user: server.user, major: server.major, binDir },
    async stop() {
      await server?.stop();
      server = null;
    },
    async start() {
      server = await startCluster({ binDir, dataDir, port });
    },
    freeze(test: TeardownTest) {
      if (!server) throw new Error('freeze: the server is not running');
      // The postmaster first, so that it forks no backend behind our back.
      signalAll([server.pid], 'SIGSTOP');
      const backends = childrenOf(server.pid);
      signalAll(backends, 'SIGSTOP');
      frozen = [server.pid, ...backends];
      // Newest teardowns run first: thawed before the job's databases on it are dropped.
      test.teardown(thaw);
    },
    thaw,
  };
}

/**
 * Notifications reach a listener in commit order: sends NOTIFY sentinel on
 * `url` and waits until `listener` (which pushes each channel it hears into
 * `heard`) has it, so everything committed before has arrived too.
 */
export async function untilSentinel(url: string, listener: pg.Client, heard: string[]): Promise<void> {
  await sql(url, 'NOTIFY sentinel');
  await waitFor(
    async () => {
      await listener.query('SELECT 1');
      return heard.includes('sentinel');
    },
    { what: 'the sentinel notification', intervalMs: 5 },
  );
}
