import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { compareSync, differing as differingRows } from '../orchestrator/src/compare/compare.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { benchJob } from './job.js';
import { type CpuSplit, pinServer } from './pinning.js';

/**
 * The compare phase (issue 16's cost figure): `capra compare` of a table of
 * `rows` rows between two servers that agree, against one full scan of the
 * table on one server that reads and hashes every row as compare does
 * (a 64-bit hash of each row's text, the md5 of them all), in no order. Each is timed `runs` times after a
 * warm-up read of the table on both servers, and the median kept; the figure
 * is compare's median over the scan's.
 *
 * Measured twice, rounds interleaved: unpinned, and with each server pinned
 * to its own core (`taskset`), as two nodes on two machines would be. Unpinned
 * on a two-core machine the single scan runs with a parallel worker on both
 * cores while compare's two servers share them, each reading its own copy:
 * that figure is about the machine (two scans on the cores of one), the
 * pinned one about compare (what a node pays over one scan of its table).
 */
export interface CompareFigure {
  rows: number;
  unpinned: CompareTimes;
  /** Each server on its own core; null where nothing can be pinned (see cpuSplit). */
  pinned: CompareTimes | null;
  /** Rows compare found differing (0: the nodes agree, as they should). */
  differing: number;
}

export interface CompareTimes {
  compareSeconds: number;
  scanSeconds: number;
  /** compareSeconds / scanSeconds. */
  ratio: number;
}

export interface CompareBenchOptions {
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  rows: number;
  runs?: number;
  /** The servers' postmasters and the cores to pin them to (a on the writer side, b on the replication side). */
  pins?: { a: number; b: number; split: CpuSplit };
  workDir: string;
  progress: (line: string) => void;
}

const TABLE = 'bench_compare';

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchCompare(o: CompareBenchOptions): Promise<CompareFigure> {
  const runs = o.runs ?? 3;
  const urls: Record<string, string> = {};
  for (const [n, side] of [
    ['a', o.source],
    ['b', o.target],
  ] as const) {
    await query(side.admin, `DROP DATABASE IF EXISTS cmp_${n}`);
    await query(side.admin, `CREATE DATABASE cmp_${n}`);
    urls[n] = side.url(`cmp_${n}`);
  }
  o.progress(`compare: filling a ${o.rows.toLocaleString('en-US')}-row table on both servers`);
  await Promise.all(
    Object.values(urls).map(async (url) => {
      await query(
        url,
        `CREATE TABLE ${TABLE} (id int PRIMARY KEY, name text, qty int, at timestamptz, note text);
         INSERT INTO ${TABLE} SELECT g, 'name ' || g, g % 1000, timestamptz '2024-01-01' + g * interval '1 second', repeat('x', g % 50)
           FROM generate_series(1, ${Number(o.rows)}) g`,
      );
      await query(url, `VACUUM ANALYZE ${TABLE}`);
    }),
  );
  const cfg = await benchJob({ name: 'cmpbench', nodes: urls, tables: [`public.${TABLE}`], workDir: o.workDir });
  const conns = new Connections(cfg, 'capra-cli', silentLogger);
  try {
    // Each row's text hashed as compare hashes it (key-sql.ts), in whatever order the scan reads them.
    const scanSql = `SELECT count(*), md5(string_agg(hashtextextended(ROW(at, id, name, note, qty)::text, 0)::text, ',')) FROM ${TABLE}`;
    await Promise.all(Object.values(urls).map((u) => query(u, scanSql))); // warm-up: the table in cache on both
    let differing = 0;
    const runOnce = async (): Promise<{ scan: number; compare: number }> => {
      const scan = await timed(() => query(urls.a!, scanSql));
      const compare = await timed(async () => {
        const rs = await compareSync(conns, cfg.name, cfg.syncs.s!, {}, silentLogger);
        differing = rs.reduce((n, r) => n + differingRows(r), 0);
      });
      return { scan, compare };
    };
    const pins = o.pins;
    const pinned = async (on: boolean): Promise<void> => {
      if (!pins) return;
      await pinServer(pins.a, on ? pins.split.writer : pins.split.all);
      await pinServer(pins.b, on ? pins.split.replication : pins.split.all);
      // The pool's open backends keep the affinity they had: fresh ones inherit the postmaster's.
      await conns.close();
    };
    const free: { scan: number; compare: number }[] = [];
    const pinnedRuns: { scan: number; compare: number }[] = [];
    for (let i = 0; i < runs; i++) {
      free.push(await runOnce());
      o.progress(`compare: run ${i + 1} unpinned: scan ${free[i]!.scan.toFixed(2)} s, compare ${free[i]!.compare.toFixed(2)} s`);
      if (!pins) continue;
      await pinned(true);
      try {
        pinnedRuns.push(await runOnce());
      } finally {
        await pinned(false);
      }
      o.progress(`compare: run ${i + 1} pinned: scan ${pinnedRuns[i]!.scan.toFixed(2)} s, compare ${pinnedRuns[i]!.compare.toFixed(2)} s`);
    }
    const times = (xs: { scan: number; compare: number }[]): CompareTimes => {
      const scanSeconds = median(xs.map((x) => x.scan));
      const compareSeconds = median(xs.map((x) => x.compare));
      return { compareSeconds, scanSeconds, ratio: compareSeconds / scanSeconds };
    };
    return { rows: o.rows, unpinned: times(free), pinned: pins ? times(pinnedRuns) : null, differing };
  } finally {
    await conns.close();
  }
}

export function compareLine(f: CompareFigure): string {
  const times = (x: CompareTimes): string =>
    `compare ${x.compareSeconds.toFixed(2)} s, one full scan ${x.scanSeconds.toFixed(2)} s on one server: ${x.ratio.toFixed(2)}x`;
  return (
    `${f.rows.toLocaleString('en-US')} rows, two servers that agree: ` +
    `${f.pinned ? `each server on its own core: ${times(f.pinned)}; unpinned: ` : ''}${times(f.unpinned)}` +
    `${f.differing > 0 ? ` (${f.differing} rows differed!)` : ''}`
  );
}
