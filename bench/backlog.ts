import type pg from 'pg';
import { BENCH_TABLE, type Equal, connect, createBenchTable, equalOnceArrived, lastValue, sums, until, write } from './burst.js';
import type { Row } from './table.js';
import { createDb } from './throughput.js';
import type { Tool, ToolName } from './tools.js';

/**
 * The backlog phase: a one-way sync a -> b whose daemon is stopped while
 * `rows` single-row UPDATEs (every row of the bench table once, in
 * transactions of 1,000) are committed on a; then the daemon starts, and the
 * time runs from its start until b's contents equal a's (by equalAt: until
 * the checksum that found them equal was sent). So the figure is
 * the tool's rate at working off changes that piled up while it was down,
 * startup included, and the sizes show whether that cost grows linearly.
 * Each size gets fresh databases with a table of `rows` rows.
 */
export interface BacklogCase {
  rows: number;
  /** From the daemon's start until b equals a; null when the case was not run (see capped). */
  seconds: number | null;
  /** Until the answer of the checksum that found them equal: the figure as measured before 2026-12-07 02:00 UTC; null as seconds. */
  answeredSeconds: number | null;
  rowsPerSecond: number | null;
  /** The writer's time for the backlog, daemon stopped. */
  writeSeconds: number;
  /** Why there is no figure: the case took longer than the phase's limit, or a smaller one did. */
  capped?: string;
}

export interface BacklogFigures {
  cases: BacklogCase[];
  /** Largest case's time over (largest / smallest rows) times the smallest's: 1 is linear. */
  growth: number | null;
}

export interface BacklogOptions {
  tool: Tool;
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  /** Backlog sizes, smallest first. */
  sizes: number[];
  /** A case that has not caught up after this long is given up, and larger ones are not tried. */
  limitSeconds: number;
  progress: (line: string) => void;
}

/**
 * A fresh database `<sync>_<node>` per node, on the server given for it (so
 * several nodes can share a server), with the bench table of `rows` rows, and
 * `tool`'s sync `sync` over them, set up but not started.
 */
export async function setUpBenchSync(
  tool: Tool,
  sync: string,
  nodes: Record<string, { admin: string; url: (db: string) => string }>,
  sources: string[],
  rows: number,
): Promise<Record<string, string>> {
  const urls: Record<string, string> = {};
  for (const [name, server] of Object.entries(nodes)) {
    await createDb(server.admin, `${sync}_${name}`);
    urls[name] = server.url(`${sync}_${name}`);
  }
  await createBenchTable(Object.values(urls), rows);
  await tool.setUp(sync, { dbs: urls, sources, tables: [`public.${BENCH_TABLE}`], kick: 'notify' });
  return urls;
}

/** Until `target` equals `want` (equalOnceArrived, polled every 5 ms): when it was found so. */
async function caughtUp(target: pg.Client, lastId: number, lastV: number, want: string, limitMs: number): Promise<Equal> {
  let equal: Equal | null = null;
  await until(async () => (equal = await equalOnceArrived(target, lastId, lastV, want)) !== null, `the backlog of ${lastId} rows to be applied`, limitMs, 5);
  return equal!;
}

async function runCase(o: BacklogOptions, rows: number): Promise<BacklogCase> {
  const db = `backlog${rows}_${o.tool.name.toLowerCase()}`;
  const urls = await setUpBenchSync(o.tool, db, { a: o.source, b: o.target }, ['a'], rows);
  const [a, b] = [await connect(urls.a!), await connect(urls.b!)];
  try {
    o.progress(`backlog: ${o.tool.name}, ${rows} single-row updates in transactions of 1,000, daemon stopped`);
    const { first, last } = await write(a, rows, 1000);
    const writeSeconds = Math.round((Number(last - first) / 1e9) * 1000) / 1000;
    const want = await sums(a);
    const lastV = await lastValue(a, rows);
    const started = process.hrtime.bigint();
    let done: Equal | null = null;
    try {
      // Watched from the start, not from when start() resolves: Bucardo's
      // start() waits for a kick answered after its first run, which would
      // otherwise count against it.
      await Promise.all([
        o.tool.start(db, o.limitSeconds * 1000),
        caughtUp(b, rows, lastV, want, o.limitSeconds * 1000).then((e) => {
          done = e;
        }),
      ]);
    } catch (e) {
      const why = `not caught up in ${o.limitSeconds} s (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
      return { rows, seconds: null, answeredSeconds: null, rowsPerSecond: null, writeSeconds, capped: why };
    }
    const since = (t: bigint): number => Math.round((Number(t - started) / 1e9) * 1000) / 1000;
    const seconds = since(done!.at);
    return { rows, seconds, answeredSeconds: since(done!.answered), rowsPerSecond: Math.round(rows / seconds), writeSeconds };
  } finally {
    await Promise.all([a.end(), b.end()]);
    await o.tool.stop();
    await o.tool.remove(db);
  }
}

export async function benchBacklog(o: BacklogOptions): Promise<BacklogFigures> {
  const cases: BacklogCase[] = [];
  for (const rows of o.sizes) {
    const given = cases.find((c) => c.capped);
    cases.push(
      given
        ? { rows, seconds: null, answeredSeconds: null, rowsPerSecond: null, writeSeconds: 0, capped: `not tried: ${given.rows} rows already ${given.capped}` }
        : await runCase(o, rows),
    );
  }
  const [small, large] = [cases[0], cases[cases.length - 1]];
  const growth = small?.seconds && large?.seconds ? large.seconds / ((large.rows / small.rows) * small.seconds) : null;
  return { cases, growth: growth === null ? null : Math.round(growth * 1000) / 1000 };
}

/** The phase's table rows: rows/s per size, and the linearity goal (issue 13: within 1.2x of linear). */
export function backlogRows(figures: Partial<Record<ToolName, BacklogFigures>>, sizes: number[]): Row[] {
  const rate = (t: ToolName, rows: number): number | null => figures[t]?.cases.find((c) => c.rows === rows)?.rowsPerSecond ?? null;
  const rows: Row[] = sizes.map((n) => ({
    metric: `backlog, ${n.toLocaleString('en-US')} single-row updates applied after the daemon starts`,
    unit: 'rows/s',
    capra: rate('Capra', n),
    bucardo: rate('Bucardo', n),
    better: 'higher',
  }));
  const [lo, hi] = [sizes[0]!, sizes[sizes.length - 1]!];
  const growth = (t: ToolName): number | null => (figures[t]?.growth == null ? null : figures[t]!.growth! * 100);
  const capra = growth('Capra');
  rows.push({
    metric: `backlog, ${hi.toLocaleString('en-US')} time over ${hi / lo}x the ${lo.toLocaleString('en-US')} time`,
    unit: '%',
    capra,
    bucardo: growth('Bucardo'),
    better: 'lower',
    target: '<= 120%',
    met: capra === null ? null : capra <= 120,
  });
  return rows;
}
