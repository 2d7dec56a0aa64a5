import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfigText } from '../config/load.js';
import { Daemon } from '../daemon/daemon.js';
import { type Cluster, embeddedBinDir, startCluster } from '../embedded/cluster.js';
import { install } from '../install/install.js';
import { addTriggersForSyncs } from '../triggers/sync-triggers.js';
import { sleep } from '../util/backoff.js';
import { silentLogger } from '../util/logger.js';

/**
 * `capra demo`: two embedded PostgreSQL servers, a one-way sync between
 * them, and a handful of writes on the source, each shown arriving on the
 * target with the time it took. Everything lives in a temporary directory
 * that is removed at the end.
 */
export async function runDemo(opts: { print: (line: string) => void }): Promise<void> {
  const { print } = opts;
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-demo-'));
  const clusters: Cluster[] = [];
  let daemon: Daemon | null = null;
  try {
    print('starting two embedded PostgreSQL servers (a and b)...');
    const bin = embeddedBinDir();
    clusters.push(...(await Promise.all(['a', 'b'].map((n) => startCluster({ binDir: bin, dataDir: path.join(dir, n) })))));
    const [a, b] = clusters as [Cluster, Cluster];
    print(`  a: PostgreSQL ${a.major} on port ${a.port}; b: PostgreSQL ${b.major} on port ${b.port}`);
    for (const c of clusters) {
      await query(c.url('postgres'), 'CREATE DATABASE shop');
      await query(c.url('shop'), 'CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL)');
    }
    const cfg = parseConfigText(
      [
        'name: demo',
        'databases:',
        `  a: ${a.url('shop')}`,
        `  b: ${b.url('shop')}`,
        'syncs:',
        '  shop:',
        '    sources: [a]',
        '    targets: [b]',
        '    tables: { include: [public] }',
        `run_dir: ${JSON.stringify(dir)}`,
        `log_dir: ${JSON.stringify(dir)}`,
      ].join('\n'),
      path.join(dir, 'capra.yml'),
    );
    print('capra install; capra add-triggers; capra start (in this process)...');
    await install(cfg, silentLogger);
    await addTriggersForSyncs(cfg, silentLogger);
    daemon = new Daemon(cfg, silentLogger);
    daemon.start();

    const steps: [string, string][] = [
      ['insert order 1: 3 widgets', "INSERT INTO orders VALUES (1, 'widget', 3)"],
      ['insert orders 2-4 in one transaction', "INSERT INTO orders VALUES (2, 'gadget', 1), (3, 'sprocket', 12), (4, 'gizmo', 7)"],
      ['update order 3: qty 12 -> 20', 'UPDATE orders SET qty = 20 WHERE id = 3'],
      ['delete order 2', 'DELETE FROM orders WHERE id = 2'],
      ['change the key of order 4 to 40', 'UPDATE orders SET id = 40 WHERE id = 4'],
    ];
    for (const [label, stmt] of steps) {
      await query(a.url('shop'), stmt);
      const t0 = Date.now();
      print(`a: ${label}`);
      await waitSame(a.url('shop'), b.url('shop'));
      print(`   b has it ${Date.now() - t0} ms later`);
    }
    const rows = await query(b.url('shop'), 'SELECT id, item, qty FROM orders ORDER BY id');
    print('b now holds:');
    for (const r of rows) print(`   ${r.id}  ${r.item}  ${r.qty}`);
    print(`a and b are identical. Demo took ${((Date.now() - started) / 1000).toFixed(1)} s.`);
  } finally {
    await daemon?.stop();
    await Promise.all(clusters.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function query(url: string, text: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-demo' });
  c.on('error', () => {}); // a failure surfaces in the query
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function waitSame(a: string, b: string): Promise<void> {
  const digest = "SELECT coalesce(string_agg(format('%s|%s|%s', id, item, qty), ',' ORDER BY id), '') AS d FROM orders";
  for (let i = 0; i < 300; i++) {
    const [x, y] = await Promise.all([query(a, digest), query(b, digest)]);
    if (x[0]!.d === y[0]!.d) return;
    await sleep(10);
  }
  throw new Error('the target did not catch up within 3 s');
}
