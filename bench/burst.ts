import pg from 'pg';

/**
 * Update bursts on the nodes of a bench job, timed until every node has
 * them: what the one-way and the multi-master throughput figures share.
 */

export const BENCH_TABLE = 'bench_repl';

export interface BurstFigure {
  /** Rows changed, all writers together. */
  rows: number;
  /** Rows per transaction (each row its own UPDATE statement), or every writer's rows in one UPDATE. */
  txRows: number | 'all';
  /** From the first commit until every node has every writer's changes. */
  seconds: number;
  rowsPerSecond: number;
  /** From the first commit to the last (0 for one transaction per writer). */
  writeSeconds: number;
}

/** One writer of a burst: `rows` rows on `node`, ids from `firstId`. */
export interface BurstWrite {
  node: string;
  firstId: number;
  rows: number;
}

const checksum = `SELECT count(*) AS n, coalesce(sum(hashtext(t::text)::bigint), 0) AS h FROM ${BENCH_TABLE} t`;

export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  return c;
}

/** The bench table with `rows` rows, the same on every node (so the sync's initial copy has nothing to do). */
export async function createBenchTable(urls: string[], rows: number): Promise<void> {
  for (const url of urls) {
    const c = await connect(url);
    try {
      await c.query(`CREATE TABLE ${BENCH_TABLE} (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)`);
      await c.query(`INSERT INTO ${BENCH_TABLE} SELECT g, 0, repeat('x', 80) FROM generate_series(1, ${rows}) g`);
    } finally {
      await c.end();
    }
  }
}

/** Every node's contents equal, by checksum. */
export async function allSame(clients: pg.Client[]): Promise<boolean> {
  const sums = await Promise.all(clients.map(async (c) => (await c.query(checksum)).rows[0] as { n: string; h: string }));
  return sums.every((s) => s.n === sums[0]!.n && s.h === sums[0]!.h);
}

export async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('replication did not catch up in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Writes one writer's rows; returns its last transaction's id and when its first and last commits returned. */
async function write(c: pg.Client, w: BurstWrite, txRows: number | 'all'): Promise<{ xid: string; first: bigint; last: bigint }> {
  const per = txRows === 'all' ? w.rows : txRows;
  let xid = '';
  let first = 0n;
  let last = 0n;
  for (let from = w.firstId; from < w.firstId + w.rows; from += per) {
    const to = Math.min(from + per, w.firstId + w.rows) - 1;
    await c.query('BEGIN');
    xid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    if (txRows === 'all') {
      await c.query(`UPDATE ${BENCH_TABLE} SET v = v + 1 WHERE id BETWEEN $1 AND $2`, [from, to]);
    } else {
      // One round trip for the transaction's single-row statements (simple query protocol).
      const statements: string[] = [];
      for (let id = from; id <= to; id++) statements.push(`UPDATE ${BENCH_TABLE} SET v = v + 1 WHERE id = ${id}`);
      await c.query(statements.join(';\n'));
    }
    await c.query('COMMIT');
    last = process.hrtime.bigint();
    if (first === 0n) first = last;
  }
  return { xid, first, last };
}

/**
 * Runs the writers at once, each on its own node, and times from the first
 * commit until every other node's stored position for each writer covers
 * its last transaction; then checks that every node's contents are equal.
 * The position is the barrier (cheap to poll, unlike a checksum that would
 * compete with the apply); positions are stored in the same transaction as
 * the rows, so it is reached exactly when the rows are there.
 */
export async function timeBurst(job: string, clients: Map<string, pg.Client>, writes: BurstWrite[], txRows: number | 'all'): Promise<BurstFigure> {
  const done = await Promise.all(writes.map((w) => write(clients.get(w.node)!, w, txRows)));
  await Promise.all(
    writes.map((w, i) =>
      Promise.all(
        [...clients].filter(([node]) => node !== w.node).map(([, c]) =>
          until(async () => {
            const r = await c.query(`SELECT pg_visible_in_snapshot($1::xid8, position) AS ok FROM repl.applied WHERE job = $2 AND source = $3`, [done[i]!.xid, job, w.node]);
            return r.rows[0]?.ok === true;
          }, 600_000),
        ),
      ),
    ),
  );
  const end = process.hrtime.bigint();
  const first = done.reduce((m, d) => (d.first < m ? d.first : m), done[0]!.first);
  const last = done.reduce((m, d) => (d.last > m ? d.last : m), done[0]!.last);
  if (!(await allSame([...clients.values()]))) throw new Error(`the nodes' contents differ after the burst (${[...clients.keys()].join(', ')})`);
  const rows = writes.reduce((n, w) => n + w.rows, 0);
  const seconds = Number(end - first) / 1e9;
  return {
    rows,
    txRows,
    seconds: Math.round(seconds * 1000) / 1000,
    rowsPerSecond: Math.round(rows / seconds),
    writeSeconds: Math.round((Number(last - first) / 1e9) * 1000) / 1000,
  };
}
