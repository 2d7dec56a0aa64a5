import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { compareSync } from '../orchestrator/src/compare/compare.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { benchJob } from './job.js';

/**
 * The compare phase (issue 16's cost figure): `capra compare` of a table of
 * `rows` rows between two servers that agree, against one full scan of the
 * table on one server that reads and hashes every row as compare does
 * (a 64-bit hash of each row's text, the md5 of them all), in no order. Each is timed `runs` times after a
 * warm-up read of the table on both servers, and the median kept; the figure
 * is compare's median over the scan's.
 */
export interface CompareFigure {
  rows: number;
  compareSeconds: number;
  scanSeconds: number;
  /** compareSeconds / scanSeconds. */
  ratio: number;
  /** Rows compare found differing (0: the nodes agree, as they should). */
  differing: number;
}

export interface CompareBenchOptions {
  source: { admin: string; url: (db: string) => string };
  target: { admin: string; url: (db: string) => string };
  rows: number;
  runs?: number;
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
    const scans: number[] = [];
    const compares: number[] = [];
    let differing = 0;
    for (let i = 0; i < runs; i++) {
      scans.push(await timed(() => query(urls.a!, scanSql)));
      compares.push(
        await timed(async () => {
          const rs = await compareSync(conns, cfg.name, cfg.syncs.s!, {}, silentLogger);
          differing = rs.reduce((n, r) => n + r.missing.length + r.extra.length + r.different.length, 0);
        }),
      );
      o.progress(`compare: run ${i + 1}: scan ${scans[i]!.toFixed(2)} s, compare ${compares[i]!.toFixed(2)} s`);
    }
    const scanSeconds = median(scans);
    const compareSeconds = median(compares);
    return { rows: o.rows, compareSeconds, scanSeconds, ratio: compareSeconds / scanSeconds, differing };
  } finally {
    await conns.close();
  }
}

export function compareLine(f: CompareFigure): string {
  return `${f.rows.toLocaleString('en-US')} rows, two servers that agree: compare ${f.compareSeconds.toFixed(2)} s, one full scan ${f.scanSeconds.toFixed(2)} s on one server: ${f.ratio.toFixed(2)}x${f.differing > 0 ? ` (${f.differing} rows differed!)` : ''}`;
}
