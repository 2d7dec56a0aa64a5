// Randomized convergence: three sources, a writer on each doing inserts,
// updates of overlapping keys, deletes and key changes, concurrently with the
// daemon; when the writers stop, every node holds the same rows, for every
// built-in strategy that settles conflicts (skip: the same rows but for the
// keys it logged as skipped). abort is left out: it stops the sync at the
// first conflict by design (tested in multi-master.test.ts).
//
// The writers' choices come from one seed, printed at the start and in every
// failure message; CAPRA_SEED=<n> replays it (the interleaving with the
// daemon still varies from run to run).
import pg from 'pg';
import t from 'tap';
import { type Job, makeJob, setUp, startDaemon } from './harness/capra.js';
import { sql, testClusters, waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

const KEYS = 120;
const WRITE_MS = Number(process.env.CAPRA_CONVERGE_MS ?? 4000);
const seed = Number(process.env.CAPRA_SEED ?? Math.floor(Math.random() * 2 ** 31));
t.comment(`convergence seed ${seed} (replay with CAPRA_SEED=${seed})`);

/** mulberry32: a small seeded PRNG. */
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** One writer: random statements, sometimes several in a transaction, until `until`. Errors (key collisions, deadlocks) are part of the game. */
async function writer(url: string, name: string, rand: () => number, until: number): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let done = 0;
  const key = (): number => 1 + Math.floor(rand() * KEYS);
  try {
    while (Date.now() < until) {
      const statements = 1 + Math.floor(rand() * 3);
      const tx: [string, unknown[]][] = [];
      for (let i = 0; i < statements; i++) {
        const op = rand();
        if (op < 0.35)
          tx.push([
            'INSERT INTO kv (id, v, who) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, who = EXCLUDED.who',
            [key(), Math.floor(rand() * 1000), name],
          ]);
        else if (op < 0.7) tx.push(['UPDATE kv SET v = v + $2, who = $3 WHERE id = $1', [key(), 1 + Math.floor(rand() * 9), name]]);
        else if (op < 0.85) tx.push(['DELETE FROM kv WHERE id = $1', [key()]]);
        else tx.push(['UPDATE kv SET id = $2, who = $3 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM kv WHERE id = $2)', [key(), key(), name]]);
      }
      try {
        await c.query('BEGIN');
        for (const [q, p] of tx) await c.query(q, p);
        await c.query('COMMIT');
        done++;
      } catch {
        await c.query('ROLLBACK').catch(() => {});
      }
      if (rand() < 0.2) await new Promise((r) => setTimeout(r, Math.floor(rand() * 20)));
    }
  } finally {
    await c.end();
  }
  return done;
}

const rows = async (url: string): Promise<Map<number, string>> =>
  new Map((await sql<{ id: number; r: string }>(url, 'SELECT id, ROW(v, who)::text AS r FROM kv')).map((x) => [x.id, x.r]));

/** Keys whose rows differ between nodes. */
async function differing(job: Job): Promise<number[]> {
  const all = await Promise.all(['a', 'b', 'c'].map((n) => rows(job.urls[n]!)));
  const ids = new Set(all.flatMap((m) => [...m.keys()]));
  return [...ids].filter((id) => !all.every((m) => m.get(id) === all[0]!.get(id))).sort((x, y) => x - y);
}

for (const [i, strategy] of ['latest', 'source', 'target', 'random', '[c, a, b]', 'skip'].entries()) {
  t.test(`three sources, concurrent writers, conflict ${strategy}: all nodes converge (seed ${seed})`, async (t) => {
    const job = await makeJob(t, {
      nodes: { a: c1!, b: c2!, c: c3! },
      schema: 'CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL, who text NOT NULL)',
      // Every other strategy with small batches: a source's batch is then often cut short while
      // another's holds the same keys (changes after the cut must still count as conflicts).
      yaml: `${i % 2 ? 'batch_rows: 150\n' : ''}syncs:\n  s:\n    sources: [a, b, c]\n    tables: { include: [public.kv] }\n    conflict: ${strategy}\n`,
    });
    await setUp(job);
    startDaemon(t, job);
    const until = Date.now() + WRITE_MS;
    const done = await Promise.all(['a', 'b', 'c'].map((n, w) => writer(job.urls[n]!, n, prng(seed + 1000 * i + w), until)));
    t.ok(
      done.every((n) => n > 0),
      `every writer committed transactions (${done.join(', ')}; seed ${seed})`,
    );
    const logged = async (): Promise<{ key: { id: number }; decision: string }[]> => sql(job.cfg.metadata, 'SELECT key, decision FROM repl.conflict');
    // Settled: every position covers every change (positions are stored with the rows they cover).
    await waitFor(async () => (await pending(job)) === 0, { what: `every change to be applied everywhere (seed ${seed})`, timeoutMs: 120_000 });
    const differ = await differing(job);
    if (strategy === 'skip') {
      // The same rows but for keys the log says were skipped (a later change on one node alone converges those again).
      const skippedKeys = async (): Promise<Set<number>> => new Set((await logged()).filter((c) => c.decision === 'skipped').map((c) => c.key.id));
      // The log is written just after each run commits: give it a moment to catch up.
      await waitFor(
        async () => {
          const s = await skippedKeys();
          return differ.every((id) => s.has(id));
        },
        { what: 'the conflict log to hold the skipped keys', timeoutMs: 10_000 },
      ).catch(() => {});
      const skipped = await skippedKeys();
      t.same(
        differ.filter((id) => !skipped.has(id)),
        [],
        `nodes differ only on keys logged as skipped (${differ.length} of them; seed ${seed})`,
      );
    } else {
      t.same(differ, [], `a, b and c hold the same ${(await rows(job.urls.a!)).size} rows (seed ${seed})`);
    }
    const log = await logged();
    t.ok(
      log.every((c) => c.decision === (strategy === 'skip' ? 'skipped' : 'winner')),
      `${log.length} conflicts, each settled as the strategy says (seed ${seed})`,
    );
    t.comment(`${strategy}: ${done.join('/')} writer transactions, ${log.length} conflicts`);
  });
}

/** Changes not yet applied everywhere: deltas on any node that some receiver's position does not cover. */
async function pending(job: Job): Promise<number> {
  let n = 0;
  for (const src of ['a', 'b', 'c']) {
    for (const dst of ['a', 'b', 'c']) {
      if (src === dst) continue;
      const [pos] = await sql<{ p: string | null }>(job.urls[dst]!, `SELECT position::text AS p FROM repl.applied WHERE source = $1`, [src]);
      if (!pos?.p) return Infinity;
      const [r] = await sql<{ n: number }>(
        job.urls[src]!,
        `SELECT count(*)::int AS n FROM repl.delta WHERE origin IS NULL AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)`,
        [pos.p],
      );
      n += r!.n;
    }
  }
  return n;
}
