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

/** Rows of the demo's table in key order; equal digests mean equal contents. */
const DIGEST = "SELECT count(*)::int AS n, md5(coalesce(string_agg(format('%s|%s|%s', id, name, price), ',' ORDER BY id), '')) AS d FROM items";
/**
 * The conflict the demo provokes, each version as its row, read back from the
 * metadata database; the logged row holds the price as a JSON number (12), so
 * it is cast back to the column's type to print as the table shows it (12.00).
 */
const LAST_CONFLICT = `
  SELECT table_name, key, strategy, decision, winner,
         (SELECT string_agg(CASE WHEN jsonb_typeof(v->'row') = 'object'
                                 THEN format('%s had (%s, %s, %s)', v->>'db', v->'row'->>'id', v->'row'->>'name', (v->'row'->>'price')::numeric(8,2))
                                 ELSE format('%s had deleted it', v->>'db') END, ', ' ORDER BY v->>'db')
            FROM jsonb_array_elements(versions) v) AS had
    FROM repl.conflict ORDER BY id DESC LIMIT 1`;
/** Polling gives up after this long: generous, since the machine may be busy. */
const WAIT_MS = 30_000;

/**
 * `capra demo`: two embedded PostgreSQL servers, a multi-master sync between
 * them, writes on each shown arriving on the other with the time it took, a
 * conflict made on purpose and how it was settled, and proof that both end
 * up identical. Everything lives in a temporary directory that is removed at
 * the end, also on failure or when `signal` aborts (the CLI's Ctrl-C).
 */
export async function runDemo(opts: { print: (line: string) => void; signal?: AbortSignal }): Promise<void> {
  const { print, signal } = opts;
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-demo-'));
  const clusters: Cluster[] = [];
  let daemon: Daemon | null = null;
  try {
    print('starting two embedded PostgreSQL servers (a and b)...');
    const bin = embeddedBinDir();
    // allSettled: a server that did start is stopped below even when the other failed.
    const starts = await Promise.allSettled(
      ['a', 'b'].map(async (n) => {
        const c = await startCluster({ binDir: bin, dataDir: path.join(dir, n) });
        clusters.push(c);
        return c;
      }),
    );
    for (const s of starts) if (s.status === 'rejected') throw s.reason;
    const [a, b] = starts.map((s) => (s as PromiseFulfilledResult<Cluster>).value) as [Cluster, Cluster];
    signal?.throwIfAborted();
    print(`  a: PostgreSQL ${a.major} on port ${a.port}; b: PostgreSQL ${b.major} on port ${b.port}`);
    const urlA = a.url('shop');
    const urlB = b.url('shop');
    for (const c of clusters) {
      await query(c.url('postgres'), 'CREATE DATABASE shop', signal);
      await query(c.url('shop'), 'CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2) NOT NULL)', signal);
    }
    const cfg = parseConfigText(
      [
        'name: demo',
        'databases:',
        `  a: ${urlA}`,
        `  b: ${urlB}`,
        'syncs:',
        '  shop:',
        '    sources: [a, b]',
        '    targets: []',
        '    tables: { include: [public] }',
        '    conflict: latest',
        `run_dir: ${JSON.stringify(dir)}`,
        `log_dir: ${JSON.stringify(dir)}`,
      ].join('\n'),
      path.join(dir, 'capra.yml'),
    );
    print('capra install; capra add-triggers; capra start (in this process)...');
    print('  sync shop: sources [a, b] (multi-master), conflict: latest');
    await install(cfg, silentLogger);
    await addTriggersForSyncs(cfg, silentLogger);
    daemon = new Daemon(cfg, silentLogger);
    daemon.start();

    const steps: ['a' | 'b', string, string][] = [
      ['a', 'insert items 1-3 in one transaction', "INSERT INTO items VALUES (1, 'widget', 9.99), (2, 'gadget', 4.50), (3, 'sprocket', 0.25)"],
      ['a', 'update item 2: price 4.50 -> 5.00', 'UPDATE items SET price = 5.00 WHERE id = 2'],
      ['b', 'insert item 4: gizmo at 7.00', "INSERT INTO items VALUES (4, 'gizmo', 7.00)"],
      ['b', 'delete item 3', 'DELETE FROM items WHERE id = 3'],
      ['b', 'change the key of item 4 to 40', 'UPDATE items SET id = 40 WHERE id = 4'],
    ];
    for (const [on, label, stmt] of steps) {
      const other = on === 'a' ? 'b' : 'a';
      await query(on === 'a' ? urlA : urlB, stmt, signal);
      const t0 = Date.now();
      print(`${on}: ${label}`);
      await waitFor(async () => (await digests(urlA, urlB, signal)).same, `${other} to catch up`, signal);
      print(`   ${other} has it ${Date.now() - t0} ms later`);
    }

    // Both servers change item 1 while no daemon runs: the next run sees the
    // key changed on both sides since it last looked, which is a conflict.
    print("a conflict on purpose: capra stop, then item 1's price changed on both servers");
    await daemon.stop();
    daemon = null;
    await query(urlA, 'UPDATE items SET price = 12.00 WHERE id = 1', signal);
    print('a: update item 1: price 9.99 -> 12.00');
    await query(urlB, 'UPDATE items SET price = 15.00 WHERE id = 1', signal);
    print('b: update item 1: price 9.99 -> 15.00 (later)');
    daemon = new Daemon(cfg, silentLogger);
    daemon.start();
    const t0 = Date.now();
    await waitFor(
      async () => (await digests(urlA, urlB, signal)).same && (await query(cfg.metadata, 'SELECT 1 FROM repl.conflict', signal)).length > 0,
      'a and b to settle the conflict',
      signal,
    );
    print(`capra start: a and b agree ${Date.now() - t0} ms later`);
    const [c] = await query(cfg.metadata, LAST_CONFLICT, signal);
    print(
      `conflict on ${c!.table_name} ${JSON.stringify(c!.key)}: ${c!.had}; ${c!.strategy} -> ${c!.decision === 'winner' ? `${c!.winner} wins` : c!.decision}`,
    );
    const item1 = async (url: string): Promise<unknown> =>
      (await query(url, "SELECT format('(%s, %s, %s)', id, name, price) AS r FROM items WHERE id = 1", signal))[0]?.r ?? 'nothing';
    print(`   a has ${await item1(urlA)}; b has ${await item1(urlB)}`);

    const rows = await query(urlB, 'SELECT id, name, price FROM items ORDER BY id', signal);
    print('a and b now hold:');
    for (const r of rows) print(`   ${r.id}  ${r.name}  ${r.price}`);
    const d = await digests(urlA, urlB, signal);
    if (!d.same) throw new Error(`a and b differ at the end (md5 ${d.a} vs ${d.b}); this is a bug, please report it`);
    print(`a and b hold identical contents: ${d.n} rows, md5 ${d.a} on both.`);
    print(`Demo took ${((Date.now() - started) / 1000).toFixed(1)} s.`);
  } finally {
    await daemon?.stop();
    await Promise.all(clusters.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function query(url: string, text: string, signal?: AbortSignal): Promise<Record<string, unknown>[]> {
  signal?.throwIfAborted();
  const c = new pg.Client({ connectionString: url, application_name: 'capra-demo' });
  c.on('error', () => {}); // a failure surfaces in the query
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function digests(a: string, b: string, signal?: AbortSignal): Promise<{ same: boolean; n: number; a: string; b: string }> {
  const [[x], [y]] = await Promise.all([query(a, DIGEST, signal), query(b, DIGEST, signal)]);
  return { same: x!.d === y!.d, n: x!.n as number, a: x!.d as string, b: y!.d as string };
}

/** Polls `ready` until it holds; no fixed sleep stands in for "long enough". */
async function waitFor(ready: () => Promise<boolean>, what: string, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${WAIT_MS / 1000} s; the replication is stuck or the machine is overloaded`);
    await sleep(10, signal);
  }
}
