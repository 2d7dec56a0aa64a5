import { type ChildProcess, spawn } from 'node:child_process';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { type CopyFormat, chooseFormat, columnTypes } from '../orchestrator/src/clone/copy-format.js';
import { executeClone } from '../orchestrator/src/clone/execute.js';
import { claimNextClone, finishClone } from '../orchestrator/src/clone/request.js';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import type { Config } from '../orchestrator/src/config/types.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { install } from '../orchestrator/src/install/install.js';
import { addTriggersForSyncs } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { benchJob } from './job.js';
import { pgbenchInit } from './pgbench.js';

/**
 * Clone throughput: pgbench_accounts (100,000 rows per unit of scale) copied
 * from a source database to an empty table on another server, by the raw
 * pipe `psql -c "COPY ... TO STDOUT" | psql -c "COPY ... FROM STDIN"` and
 * by a Capra clone (repl.clone, carried out by executeClone as the daemon
 * would), then by one Capra clone into two targets from one read. The pipe
 * runs in text (the default) and in binary format; the clone picks binary
 * where it can (see chooseFormat), as it does here. Times are medians of
 * `runs` wall-clock runs, interleaved so that the methods share whatever the
 * machine is doing; MB/s is the table's size in COPY text over that time,
 * the same for all whatever format they used.
 */
export interface CloneFigures {
  rows: number;
  /** Bytes of COPY text in one copy of the table. */
  bytes: number;
  /** Bytes the clone streamed per copy (repl.clone_table.bytes), in the format it chose. */
  cloneBytes: number;
  /** The COPY format the clone chose (chooseFormat, as the daemon decides it). */
  cloneFormat: CopyFormat;
  runs: number;
  /** How the source was filled: pgbench -i, or SQL when there is no pgbench. */
  filledBy: 'pgbench' | 'sql';
  /** null: no psql found, the pipe was not measured. */
  pipeSeconds: number | null;
  pipeMBps: number | null;
  pipeRunSeconds: number[];
  /** The same pipe in binary format. */
  binaryPipeSeconds: number | null;
  binaryPipeMBps: number | null;
  binaryPipeRunSeconds: number[];
  cloneSeconds: number;
  cloneMBps: number;
  cloneRunSeconds: number[];
  /** The clone's rate over the text pipe's (1 = as fast). */
  cloneVsPipe: number | null;
  /** The clone's rate over the binary pipe's. */
  cloneVsBinaryPipe: number | null;
  twoTargetSeconds: number;
  /** Per target: one copy's bytes over the time both targets took. */
  twoTargetMBps: number;
  twoTargetRunSeconds: number[];
}

export interface CloneBenchOptions {
  source: string;
  target: string;
  /** A second target, for the clone into two targets from one read. */
  target2: string;
  workDir: string;
  scale: number;
  runs: number;
  pgbench: string | null;
  psql: string | null;
}

const TABLE = 'public.pgbench_accounts';

/** One statement on a connection of its own. */
async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

/**
 * pgbench_accounts on the source: by pgbench -i when there is one, else the
 * same table and rows by SQL. VACUUM then sets hint bits and the visibility
 * map, so no run pays for the first read of fresh rows.
 */
async function fillSource(url: string, scale: number, pgbench: string | null): Promise<void> {
  if (pgbench) {
    await pgbenchInit(pgbench, url, scale);
  } else {
    await query(url, 'CREATE TABLE public.pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))');
    await query(url, `INSERT INTO ${TABLE} SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${scale * 100_000}) g`);
    await query(url, `ALTER TABLE ${TABLE} ADD PRIMARY KEY (aid)`);
  }
  await query(url, `VACUUM (ANALYZE) ${TABLE}`);
}

/**
 * The same table, empty, on a target. No autovacuum on it: each run loads a
 * million rows, and a vacuum of them would run into the next measurement.
 */
async function createTarget(url: string): Promise<void> {
  await query(url, 'CREATE TABLE public.pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84)) WITH (autovacuum_enabled = off)');
}

async function rowCount(url: string): Promise<number> {
  return Number((await query<{ n: string }>(url, `SELECT count(*) AS n FROM ${TABLE}`))[0]!.n);
}

/** Row count and checksum of the table. */
async function fingerprint(url: string): Promise<string> {
  const r = await query<{ n: string; h: string }>(url, `SELECT count(*) AS n, coalesce(sum(hashtext(t::text)::bigint), 0) AS h FROM ${TABLE} t`);
  return `${r[0]!.n}/${r[0]!.h}`;
}

/** The table's size in COPY text, read once through this process. */
async function textSize(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  try {
    let n = 0;
    for await (const chunk of c.query(copyTo(`COPY ${TABLE} TO STDOUT`))) n += (chunk as Buffer).length;
    return n;
  } finally {
    await c.end();
  }
}

async function expectRows(url: string, rows: number, what: string): Promise<void> {
  const n = await rowCount(url);
  if (n !== rows) throw new Error(`${what}: the target has ${n} rows of ${TABLE}, expected ${rows}`);
}

/**
 * A checkpoint on every server, so no run flushes what the one before it
 * wrote, after waiting (up to 30 s) for autovacuum workers to finish, so no
 * run shares the CPUs with the vacuum of an earlier phase's tables.
 */
async function checkpoint(urls: string[]): Promise<void> {
  for (const url of urls) {
    for (let waited = 0; waited < 30_000; waited += 200) {
      const busy = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`);
      if (busy[0]!.n === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await query(url, 'CHECKPOINT');
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

function seconds(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

/**
 * Resolves when the child has exited 0 and its stderr is read; rejects with
 * that stderr otherwise. Not on 'close': a stdout handed to another child
 * never closes here.
 */
function exited(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  const read = new Promise<void>((resolve) => {
    if (!child.stderr) return resolve();
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stderr.once('close', () => resolve());
  });
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`${what}: ${err.message}`)));
    child.once('exit', (code, signal) => {
      void read.then(() => {
        if (code === 0) resolve();
        else reject(new Error(`${what} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
      });
    });
  });
}

/**
 * One run of the raw pipe into an emptied target: two psql processes, the
 * first one's stdout as the second one's stdin (no shell, nothing passes
 * through this process). Seconds from the spawn until both have exited.
 */
async function pipeOnce(psql: string, source: string, target: string, format: 'text' | 'binary'): Promise<number> {
  await query(target, `TRUNCATE ${TABLE}`);
  const opt = format === 'binary' ? ' (FORMAT binary)' : '';
  const t0 = process.hrtime.bigint();
  const out = spawn(psql, ['-X', '-q', '-d', source, '-c', `COPY ${TABLE} TO STDOUT${opt}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const into = spawn(psql, ['-X', '-q', '-d', target, '-c', `COPY ${TABLE} FROM STDIN${opt}`], { stdio: [out.stdout!, 'ignore', 'pipe'] });
  await Promise.all([exited(out, 'psql COPY TO STDOUT'), exited(into, 'psql COPY FROM STDIN')]);
  return seconds(t0);
}

/** A job with a source a and two targets b and c over pgbench_accounts, installed, with its triggers on. */
async function twoTargetJob(opts: CloneBenchOptions): Promise<Config> {
  const name = 'bench_clone2';
  const cfg = parseConfigText(
    [
      `name: ${name}`,
      'databases:',
      `  a: ${opts.source}`,
      `  b: ${opts.target}`,
      `  c: ${opts.target2}`,
      'syncs:',
      `  s: { sources: [a], targets: [b, c], tables: { include: [${TABLE}] }, copy_data: never }`,
      `run_dir: ${JSON.stringify(opts.workDir)}`,
      `log_dir: ${JSON.stringify(opts.workDir)}`,
    ].join('\n'),
    `${opts.workDir}/${name}.yml`,
  );
  await install(cfg, silentLogger);
  await addTriggersForSyncs(cfg, silentLogger);
  return cfg;
}

interface CloneRun {
  seconds: number;
  /** COPY text bytes and rows each receiver got. */
  bytes: Map<string, number>;
  rows: Map<string, number>;
}

/**
 * One Capra clone: queued by `queue` (SQL calling repl.clone) in the job's
 * metadata database and claimed there outside the timing, then carried out
 * by executeClone (timed, wall clock) and recorded as the daemon would.
 */
async function cloneOnce(cfg: Config, queue: string): Promise<CloneRun> {
  const conns = new Connections(cfg, 'capra-clone', silentLogger);
  try {
    const req = await conns.with(Connections.META, async (c) => {
      await c.query(queue);
      return claimNextClone(c);
    });
    if (!req) throw new Error('the queued clone was not found');
    const t0 = process.hrtime.bigint();
    let outcome: string;
    try {
      outcome = await executeClone(conns, cfg.name, req, silentLogger);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      await conns.with(Connections.META, (c) => finishClone(c, req.id, 'failed', msg));
      throw new Error(`clone ${req.id} failed: ${msg}`);
    }
    const took = seconds(t0);
    await conns.with(Connections.META, (c) => finishClone(c, req.id, outcome === 'done' ? 'done' : 'cancelled'));
    if (outcome !== 'done') throw new Error(`clone ${req.id} ended ${outcome}`);
    const r = await conns.with(Connections.META, (c) =>
      c.query<{ target: string; rows: string; bytes: string }>('SELECT target, rows, bytes FROM repl.clone_table WHERE clone_id = $1', [req.id]),
    );
    return {
      seconds: took,
      bytes: new Map(r.rows.map((x) => [x.target, Number(x.bytes)])),
      rows: new Map(r.rows.map((x) => [x.target, Number(x.rows)])),
    };
  } finally {
    await conns.close();
  }
}

/** The format a clone of the table from source to target uses, decided as the daemon decides it. */
async function cloneFormatOf(source: string, target: string): Promise<CopyFormat> {
  const table = { schema: 'public', table: 'pgbench_accounts' };
  const sides = [];
  for (const url of [source, target]) {
    const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
    await c.connect();
    try {
      sides.push(await columnTypes(c, table));
    } finally {
      await c.end();
    }
  }
  return chooseFormat([...sides[0]!.types.keys()], sides);
}

/** Checks that every receiver got all rows and the same bytes; returns those bytes. */
function checkRun(run: CloneRun, receivers: string[], rows: number): number {
  const bytes = run.bytes.get(receivers[0]!) ?? 0;
  for (const r of receivers) {
    if (run.rows.get(r) !== rows) throw new Error(`clone: ${r} got ${run.rows.get(r) ?? 0} rows, expected ${rows}`);
    if (run.bytes.get(r) !== bytes) throw new Error(`clone: ${r} got ${run.bytes.get(r) ?? 0} bytes, ${receivers[0]} ${bytes}`);
  }
  if (bytes <= 0) throw new Error('clone: no bytes recorded in repl.clone_table');
  return bytes;
}

const mbps = (bytes: number, s: number): number => Math.round((bytes / 1e6 / s) * 10) / 10;
const round3 = (s: number): number => Math.round(s * 1000) / 1000;

export async function benchClone(opts: CloneBenchOptions): Promise<CloneFigures> {
  const rows = opts.scale * 100_000;
  await fillSource(opts.source, opts.scale, opts.pgbench);
  await createTarget(opts.target);
  await createTarget(opts.target2);
  if ((await rowCount(opts.source)) !== rows) throw new Error(`the source does not have ${rows} rows of ${TABLE}`);
  const one = await benchJob({
    name: 'bench_clone',
    nodes: { a: opts.source, b: opts.target },
    tables: ['public.pgbench_accounts'],
    workDir: opts.workDir,
    syncExtra: 'copy_data: never',
  });
  const two = await twoTargetJob(opts);
  const servers = [opts.source, opts.target];

  const bytes = await textSize(opts.source);
  const pipe: number[] = [];
  const binaryPipe: number[] = [];
  const clone: number[] = [];
  const both: number[] = [];
  let cloneBytes = 0;
  for (let i = 0; i < opts.runs; i++) {
    if (opts.psql) {
      for (const [format, times] of [
        ['text', pipe],
        ['binary', binaryPipe],
      ] as const) {
        await checkpoint(servers);
        times.push(await pipeOnce(opts.psql, opts.source, opts.target, format));
        await expectRows(opts.target, rows, `raw pipe (${format})`);
      }
    }
    await checkpoint(servers);
    const c = await cloneOnce(one, `SELECT repl.clone(sync => 's') AS id`);
    cloneBytes = checkRun(c, ['b'], rows);
    clone.push(c.seconds);
    await expectRows(opts.target, rows, 'capra clone');

    await checkpoint(servers);
    const t = await cloneOnce(two, `SELECT repl.clone(tables => '{${TABLE}}', dbs => 'a:source,b:target,c:target') AS id`);
    if (checkRun(t, ['b', 'c'], rows) !== cloneBytes) throw new Error('clone: the two-target clone read a different number of bytes');
    both.push(t.seconds);
    await expectRows(opts.target, rows, 'capra clone into two targets');
    await expectRows(opts.target2, rows, 'capra clone into two targets');
  }
  // Once, at the end: the targets hold exactly the source's rows.
  const want = await fingerprint(opts.source);
  for (const url of [opts.target, opts.target2]) if ((await fingerprint(url)) !== want) throw new Error('clone: a target differs from the source');

  const pipeSeconds = pipe.length > 0 ? median(pipe) : null;
  const binaryPipeSeconds = binaryPipe.length > 0 ? median(binaryPipe) : null;
  const cloneSeconds = median(clone);
  const twoTargetSeconds = median(both);
  return {
    rows,
    bytes,
    cloneBytes,
    cloneFormat: await cloneFormatOf(opts.source, opts.target),
    runs: opts.runs,
    filledBy: opts.pgbench ? 'pgbench' : 'sql',
    pipeSeconds: pipeSeconds === null ? null : round3(pipeSeconds),
    pipeMBps: pipeSeconds === null ? null : mbps(bytes, pipeSeconds),
    pipeRunSeconds: pipe.map(round3),
    binaryPipeSeconds: binaryPipeSeconds === null ? null : round3(binaryPipeSeconds),
    binaryPipeMBps: binaryPipeSeconds === null ? null : mbps(bytes, binaryPipeSeconds),
    binaryPipeRunSeconds: binaryPipe.map(round3),
    cloneSeconds: round3(cloneSeconds),
    cloneMBps: mbps(bytes, cloneSeconds),
    cloneRunSeconds: clone.map(round3),
    cloneVsPipe: pipeSeconds === null ? null : Math.round((pipeSeconds / cloneSeconds) * 1000) / 1000,
    cloneVsBinaryPipe: binaryPipeSeconds === null ? null : Math.round((binaryPipeSeconds / cloneSeconds) * 1000) / 1000,
    twoTargetSeconds: round3(twoTargetSeconds),
    twoTargetMBps: mbps(bytes, twoTargetSeconds),
    twoTargetRunSeconds: both.map(round3),
  };
}
