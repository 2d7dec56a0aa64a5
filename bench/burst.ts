import pg from 'pg';

/**
 * Update bursts and single-row latency, timed the same way for any tool:
 * by the contents of the databases (a checksum query, or the inserted row),
 * never by a tool's own bookkeeping.
 */

export const BENCH_TABLE = 'bench_repl';

export interface BurstFigure {
  /** Rows changed. */
  rows: number;
  /** Rows per transaction (each row its own UPDATE statement), or all rows in one UPDATE. */
  txRows: number | 'all';
  /**
   * From the release of the burst, committed, until every other node's
   * contents equal the writer's: until the checksum query that found them
   * equal was sent (equalAt), not until its answer came back.
   */
  seconds: number;
  /** Until that checksum's answer came back, on the last node to agree: the figure as measured before 2026-12-07 02:00 UTC (see bench/README.md). */
  answeredSeconds: number;
  rowsPerSecond: number;
  /** From the first commit to the last (0 for one transaction). */
  writeSeconds: number;
  /** Over several rounds (see benchThroughput): every round's seconds, in the order run; the figure is the median round's. */
  roundSeconds?: number[];
}

export interface LatencyFigure {
  trials: number;
  p50Ms: number;
  p95Ms: number;
  /** Every trial, in ms, in the order run. */
  ms: number[];
}

const checksum = `SELECT count(*) AS n, coalesce(sum(hashtext(t::text)::bigint), 0) AS h FROM ${BENCH_TABLE} t`;

export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  return c;
}

/** The bench table with `rows` rows, the same on every node (so no tool has an initial copy to make). */
export async function createBenchTable(urls: string[], rows: number): Promise<void> {
  for (const url of urls) {
    const c = await connect(url);
    try {
      await c.query(`CREATE TABLE ${BENCH_TABLE} (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)`);
      await c.query(`INSERT INTO ${BENCH_TABLE} SELECT g, 0, repeat('x', 80) FROM generate_series(1, ${rows}) g`);
      await c.query(`VACUUM ANALYZE ${BENCH_TABLE}`);
    } finally {
      await c.end();
    }
  }
}

export async function sums(c: pg.Client): Promise<string> {
  const r = (await c.query<{ n: string; h: string }>(checksum)).rows[0]!;
  return `${r.n}/${r.h}`;
}

/** A node found equal to the writer: when the checksum query that found it was sent, and when its answer came back. */
export interface Equal {
  at: bigint;
  answered: bigint;
}

/**
 * Whether `c`'s contents equal `want` (sums of the writer). The query's
 * snapshot is taken after it was sent, so the contents were equal by `at`,
 * up to the query's trip to the server (well under a millisecond here). The
 * scan itself (about 50 ms for the bench's 100,000 rows, 0.5 s for
 * 1,000,000) is the measurement's, not the tool's: counting it would add the
 * same time to every tool's figure, and shrink the ratio of a faster one.
 */
export async function equalAt(c: pg.Client, want: string): Promise<Equal | null> {
  const at = process.hrtime.bigint();
  return (await sums(c)) === want ? { at, answered: process.hrtime.bigint() } : null;
}

/**
 * equalAt, once the last row written (`id`, now holding `v`) has arrived on
 * `c`: the cheap look by key first, so that the checksum's scans of the
 * whole table run only near the end and do not slow the apply down.
 */
export async function equalOnceArrived(c: pg.Client, id: number, v: number, want: string): Promise<Equal | null> {
  const arrived = (await c.query(`SELECT 1 FROM ${BENCH_TABLE} WHERE id = $1 AND v = $2`, [id, v])).rows.length > 0;
  return arrived ? equalAt(c, want) : null;
}

/** The bench table's `v` of row `id` on the writer: what equalOnceArrived looks for. */
export async function lastValue(writer: pg.Client, id: number): Promise<number> {
  return (await writer.query<{ v: number }>(`SELECT v FROM ${BENCH_TABLE} WHERE id = $1`, [id])).rows[0]!.v;
}

/** Polls `cond` every `everyMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function until(cond: () => Promise<boolean>, what: string, timeoutMs: number, everyMs = 2): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not reached in ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Writes the burst; returns when its first and last commits returned. */
export async function write(c: pg.Client, rows: number, txRows: number | 'all'): Promise<{ first: bigint; last: bigint }> {
  const per = txRows === 'all' ? rows : txRows;
  let first = 0n;
  let last = 0n;
  for (let from = 1; from <= rows; from += per) {
    const to = Math.min(from + per - 1, rows);
    if (txRows === 'all') {
      await c.query(`UPDATE ${BENCH_TABLE} SET v = v + 1 WHERE id BETWEEN $1 AND $2`, [from, to]);
    } else {
      // One round trip for the transaction's single-row statements (simple query protocol).
      const statements = ['BEGIN'];
      for (let id = from; id <= to; id++) statements.push(`UPDATE ${BENCH_TABLE} SET v = v + 1 WHERE id = ${id}`);
      statements.push('COMMIT');
      await c.query(statements.join(';\n'));
    }
    last = process.hrtime.bigint();
    if (first === 0n) first = last;
  }
  return { first, last };
}

/**
 * Updates `rows` rows on the writer (ids 1..rows), in transactions of
 * `txRows` single-row UPDATEs or in one UPDATE, while every other node's
 * bench table is held by a lock that the tool's apply waits for; once the
 * burst is committed the locks go, and the time runs from then until every
 * other node's contents equal the writer's (by equalAt: until the checksum
 * that found them equal was sent). So the figure is the tool's
 * rate at bringing a target up to date with a committed burst, not the
 * writer's rate (a tool that keeps pace with the writer would otherwise show
 * only how fast the writer wrote), and every tool gets the same backlog.
 * Each node is polled only after the release, 5 ms apart, by
 * equalOnceArrived: a checksum scan of the whole table every 5 ms kept a
 * core busy on the nodes that the apply was writing to, and slowed it.
 */
export async function timeBurst(writer: pg.Client, others: { url: string; client: pg.Client }[], rows: number, txRows: number | 'all'): Promise<BurstFigure> {
  const holds = await Promise.all(others.map((o) => connect(o.url)));
  try {
    for (const h of holds) await h.query(`BEGIN; LOCK TABLE ${BENCH_TABLE} IN ACCESS EXCLUSIVE MODE`);
    const { first, last } = await write(writer, rows, txRows);
    const want = await sums(writer);
    const lastV = await lastValue(writer, rows);
    const equal = new Map<pg.Client, Equal>();
    const arrived = async (c: pg.Client): Promise<boolean> => {
      const found = equal.has(c) ? null : await equalOnceArrived(c, rows, lastV, want);
      if (found) equal.set(c, found);
      return equal.has(c);
    };
    const released = process.hrtime.bigint();
    await Promise.all(holds.map((h) => h.query('COMMIT')));
    await until(async () => (await Promise.all(others.map((o) => arrived(o.client)))).every(Boolean), `the burst of ${rows} rows to arrive`, 600_000, 5);
    // All agree once the last of them does (nothing writes after the burst).
    const latest = (key: keyof Equal): number => Math.max(...[...equal.values()].map((e) => Number(e[key] - released) / 1e9));
    const seconds = latest('at');
    return {
      rows,
      txRows,
      seconds: Math.round(seconds * 1000) / 1000,
      answeredSeconds: Math.round(latest('answered') * 1000) / 1000,
      rowsPerSecond: Math.round(rows / seconds),
      writeSeconds: Math.round((Number(last - first) / 1e9) * 1000) / 1000,
    };
  } finally {
    await Promise.all(holds.map((h) => h.end()));
  }
}

/**
 * `trials` single-row inserts on the writer (ids from `firstId`), each timed
 * from its commit until the row is visible on the target (polled every 2 ms),
 * with a pause between trials so that each one starts from an idle tool.
 * One untimed insert first: a tool's first run after its start warms
 * connections and caches.
 */
export async function timeLatency(writer: pg.Client, target: pg.Client, firstId: number, trials: number): Promise<LatencyFigure> {
  const ms: number[] = [];
  for (let i = -1; i < trials; i++) {
    const id = firstId + 1 + i;
    await writer.query(`INSERT INTO ${BENCH_TABLE} VALUES ($1, 0, 'latency')`, [id]);
    const s = process.hrtime.bigint();
    await until(async () => (await target.query(`SELECT 1 FROM ${BENCH_TABLE} WHERE id = $1`, [id])).rows.length > 0, `inserted row ${id} to arrive`, 60_000);
    if (i >= 0) ms.push(Math.round((Number(process.hrtime.bigint() - s) / 1e6) * 10) / 10);
    await new Promise((r) => setTimeout(r, 300));
  }
  const sorted = [...ms].sort((x, y) => x - y);
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { trials, p50Ms: pct(50), p95Ms: pct(95), ms };
}
