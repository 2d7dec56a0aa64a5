// `npm run bench [-- --quick]`: starts its own PostgreSQL servers, measures
// Capra (and Bucardo, where it is installed) on the same setup, prints one
// table and writes it, with every raw figure, as JSON under bench/results/.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Cluster, embeddedBinDir, startCluster } from '../orchestrator/src/embedded/cluster.js';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { type BacklogFigures, backlogRows, benchBacklog } from './backlog.js';
import { Bucardo, findBucardo } from './bucardo.js';
import { type CloneFigures, benchClone } from './clone.js';
import { type FanOutFigure, benchFanOut, fanOutRows } from './fan-out.js';
import { findPgTool, findPgbench } from './pgbench.js';
import { type Row, formatTable, ratio } from './table.js';
import { type ThroughputFigures, benchThroughput } from './throughput.js';
import { BucardoTool, CapraTool, type Tool, type ToolName } from './tools.js';
import { type TpsFigure, type WritersOptions, benchWriters } from './writers.js';
import { kickPairRows, pairedKickCosts, writerRows, writerRunLines } from './writer-rows.js';
import { cpuSplit } from './pinning.js';
import { type PhaseFigure, benchPhases, phaseLine } from './phases.js';
import { type CompareBenchOptions, type CompareFigure, benchCompare, compareLine } from './compare.js';

const quick = process.argv.includes('--quick');
/** `--only compare`: just that phase (no pgbench or Bucardo needed); `--only writers`: the pgbench phase, Capra only; `--only apply`: the replication phases. */
const only = process.argv.includes('--only') ? (process.argv[process.argv.indexOf('--only') + 1] ?? null) : null;
/** The compare phase's table (issue 16's cost figure is at a million rows). */
const compareRows = quick ? 100_000 : 1_000_000;
const sizes = quick
  ? {
      scale: 1,
      clients: [4, 64],
      pollClients: [],
      seconds: 3,
      warmUpSeconds: 0,
      rounds: 1,
      burst: 20_000,
      burstRounds: 1,
      trials: 10,
      cloneScale: 2,
      cloneRuns: 3,
    }
  : {
      scale: 10,
      clients: [4, 64],
      pollClients: [64],
      seconds: 30,
      warmUpSeconds: 10,
      rounds: 3,
      burst: 100_000,
      burstRounds: 3,
      trials: 40,
      cloneScale: 10,
      cloneRuns: 5,
    };
/** The backlog and fan-out phases' sizes; a backlog case not caught up within limitSeconds is given up (and larger ones skipped). */
const loadSizes = quick
  ? { backlog: [10_000, 30_000, 100_000], backlogLimitSeconds: 300, fanOutNodes: [2, 4], fanOutRows: 4_000 }
  : { backlog: [100_000, 300_000, 1_000_000], backlogLimitSeconds: 600, fanOutNodes: [2, 4, 8], fanOutRows: 10_000 };

/**
 * What production servers run with (the test harness turns durability off
 * for speed, which would make trigger cost look larger than it is on a real
 * server), and room for pgbench's tables in memory.
 */
const SERVER_SETTINGS = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '1GB', max_wal_size: '4GB' };

const progress = (line: string): void => void process.stdout.write(`  ${line}\n`);

async function createDb(c: Cluster, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: c.url('postgres') });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  return c.url(name);
}

const side = (c: Cluster): { admin: string; url: (db: string) => string } => ({ admin: c.url('postgres'), url: (db) => c.url(db) });

/** The throughput phase's rows: bursts (rows/s) and latency. */
function burstRows(through: Partial<Record<'Capra' | 'Bucardo', ThroughputFigures>>): Row[] {
  const rows: Row[] = [];
  const n = sizes.burst.toLocaleString('en-US');
  const burst = (metric: string, pick: (t: ThroughputFigures) => number): void => {
    const [c, b] = [through.Capra ? pick(through.Capra) : null, through.Bucardo ? pick(through.Bucardo) : null];
    const r: Row = { metric, unit: 'rows/s', capra: c, bucardo: b, better: 'higher', target: '>= 5x Bucardo' };
    const x = ratio(r);
    rows.push({ ...r, met: x === null ? null : x >= 5 });
  };
  burst(`one-way, ${n} single-row updates, transactions of 1,000`, (t) => t.oneWay.batched.rowsPerSecond);
  burst(`one-way, ${n} rows updated in one transaction`, (t) => t.oneWay.oneTransaction.rowsPerSecond);
  burst(`two sources, ${n} single-row updates, transactions of 1,000`, (t) => t.swap.batched.rowsPerSecond);
  burst(`two sources, ${n} rows updated in one transaction`, (t) => t.swap.oneTransaction.rowsPerSecond);
  const lat = (p: 'p50Ms' | 'p95Ms', limit: number): void => {
    const c = through.Capra?.oneWay.latency[p] ?? null;
    rows.push({
      metric: `latency, single-row insert, ${p.slice(0, 3)}`,
      unit: 'ms',
      capra: c,
      bucardo: through.Bucardo?.oneWay.latency[p] ?? null,
      better: 'lower',
      target: `<= ${limit} ms`,
      met: c === null ? null : c <= limit,
    });
  };
  lat('p50Ms', 50);
  lat('p95Ms', 200);
  return rows;
}

function tableRows(
  tps: TpsFigure[],
  through: Partial<Record<'Capra' | 'Bucardo', ThroughputFigures>>,
  clone: CloneFigures,
  bucardoCopySeconds: number | null,
): Row[] {
  const rows: Row[] = [...writerRows(tps, sizes.clients, sizes.pollClients), ...burstRows(through)];
  const m = clone.rows.toLocaleString('en-US');
  const pipeRate = (s: number | null): number | null => (s ? Math.round(clone.rows / s) : null);
  rows.push({
    metric: `clone, ${m} rows into an empty table`,
    unit: 'rows/s',
    capra: pipeRate(clone.cloneSeconds),
    bucardo: pipeRate(bucardoCopySeconds),
    better: 'higher',
  });
  const vsText = clone.cloneVsPipe === null ? null : clone.cloneVsPipe * 100;
  rows.push({
    metric: 'clone, share of the raw COPY pipe (text)',
    unit: '%',
    capra: vsText,
    bucardo: bucardoCopySeconds && clone.pipeSeconds ? (clone.pipeSeconds / bucardoCopySeconds) * 100 : null,
    better: 'higher',
    target: '>= 90%',
    met: vsText === null ? null : vsText >= 90,
  });
  rows.push({
    metric: 'clone, share of the raw COPY pipe (binary)',
    unit: '%',
    capra: clone.cloneVsBinaryPipe === null ? null : clone.cloneVsBinaryPipe * 100,
    bucardo: bucardoCopySeconds && clone.binaryPipeSeconds ? (clone.binaryPipeSeconds / bucardoCopySeconds) * 100 : null,
    better: 'higher',
  });
  rows.push({
    metric: 'raw pipe psql COPY TO | COPY FROM, text',
    unit: 'rows/s',
    capra: pipeRate(clone.pipeSeconds),
    bucardo: pipeRate(clone.pipeSeconds),
    better: 'none',
  });
  rows.push({
    metric: 'raw pipe psql COPY TO | COPY FROM, binary',
    unit: 'rows/s',
    capra: pipeRate(clone.binaryPipeSeconds),
    bucardo: pipeRate(clone.binaryPipeSeconds),
    better: 'none',
  });
  return rows;
}

/** Each burst's seconds, per tool. */
function printBursts(through: Partial<Record<ToolName, ThroughputFigures>>): void {
  console.log(
    `\nBursts (seconds from the release of the committed burst until equal, median of ${sizes.burstRounds} interleaved rounds; each round's, the median round's until its checksum answered, and the writer's own time, in brackets):`,
  );
  for (const [name, t] of Object.entries(through)) {
    const show = (label: string, f: ThroughputFigures['swap']['batched']): void => {
      const each = f.roundSeconds && f.roundSeconds.length > 1 ? `  (rounds ${f.roundSeconds.map((x) => x.toFixed(2)).join(', ')})` : '';
      const writer = f.writeSeconds > 0 ? `  (writer ${f.writeSeconds.toFixed(2)} s)` : '';
      const answered = `  (answered ${f.answeredSeconds.toFixed(2)} s)`;
      console.log(`  ${name.padEnd(8)} ${label.padEnd(32)} ${f.seconds.toFixed(2).padStart(7)} s${each}${answered}${writer}`);
    };
    show('one-way, transactions of 1,000', t.oneWay.batched);
    show('one-way, one transaction', t.oneWay.oneTransaction);
    show('two sources, transactions of 1,000', t.swap.batched);
    show('two sources, one transaction', t.swap.oneTransaction);
  }
}

/** Where Capra's one-way apply spent each burst's time. */
function printPhases(phases: PhaseFigure[]): void {
  console.log("\nWhere Capra's one-way apply spent a burst's time (lane runs, share per phase):");
  for (const f of phases) console.log(`  ${phaseLine(f)}`);
}

/** The backlog and fan-out figures behind their table rows, one line each. */
function printLoadPhases(backlog: Partial<Record<ToolName, BacklogFigures>>, fanOut: Partial<Record<ToolName, FanOutFigure[]>>): void {
  console.log(
    "\nBacklogs (seconds from the daemon's start until equal; until the checksum that found it equal answered, and the writer's own time, daemon stopped, in brackets):",
  );
  for (const [name, f] of Object.entries(backlog)) {
    for (const c of f.cases) {
      const figure =
        c.seconds === null
          ? c.capped
          : `${c.seconds.toFixed(2).padStart(7)} s  (answered ${c.answeredSeconds?.toFixed(2) ?? 'n/a'} s)  (${c.writeSeconds.toFixed(2)} s)`;
      console.log(`  ${name.padEnd(8)} ${c.rows.toLocaleString('en-US').padStart(9)} rows ${figure}`);
    }
  }
  console.log('\nFan-out (seconds from the release of the committed burst until every node equals the writer):');
  for (const [name, figures] of Object.entries(fanOut)) {
    const first = figures[0]!;
    for (const f of figures) {
      const growth = f === first ? '' : `  (${(f.burst.seconds / first.burst.seconds).toFixed(1)}x the ${first.nodes}-source time)`;
      console.log(`  ${name.padEnd(8)} ${String(f.nodes).padStart(2)} sources ${f.burst.seconds.toFixed(2).padStart(7)} s${growth}`);
    }
  }
}

/** The compare phase's servers each on its own core, where the machine has two and taskset. */
async function comparePins(a: Cluster, b: Cluster): Promise<CompareBenchOptions['pins']> {
  const split = await cpuSplit();
  if ('missing' in split) {
    console.log(`compare not pinned: ${split.missing}`);
    return undefined;
  }
  return { a: a.pid, b: b.pid, split };
}

/** `npm run bench -- --only compare`: the compare phase alone, on two servers of its own. */
async function onlyCompare(): Promise<void> {
  await withTwoServers('compare', async (a, b, dir) => {
    const f = await benchCompare({ source: side(a), target: side(b), rows: compareRows, pins: await comparePins(a, b), workDir: dir, progress });
    console.log(`\ncompare: ${compareLine(f)}`);
  });
}

/** The throughput (bursts, latency), backlog and fan-out phases, each for every tool in turn. */
async function replicationPhases(
  tools: Tool[],
  a: Cluster,
  b: Cluster,
): Promise<{
  through: Partial<Record<ToolName, ThroughputFigures>>;
  backlog: Partial<Record<ToolName, BacklogFigures>>;
  fanOut: Partial<Record<ToolName, FanOutFigure[]>>;
}> {
  const through = await benchThroughput({
    tools,
    rounds: sizes.burstRounds,
    source: side(a),
    target: side(b),
    rows: sizes.burst,
    trials: sizes.trials,
    progress,
  });
  const backlog: Partial<Record<ToolName, BacklogFigures>> = {};
  for (const tool of tools) {
    backlog[tool.name] = await benchBacklog({
      tool,
      source: side(a),
      target: side(b),
      sizes: loadSizes.backlog,
      limitSeconds: loadSizes.backlogLimitSeconds,
      progress,
    });
  }
  const fanOut: Partial<Record<ToolName, FanOutFigure[]>> = {};
  for (const tool of tools) {
    fanOut[tool.name] = await benchFanOut({ tool, servers: [side(a), side(b)], nodeCounts: loadSizes.fanOutNodes, rows: loadSizes.fanOutRows, progress });
  }
  return { through, backlog, fanOut };
}

/**
 * `npm run bench -- --only apply [--quick]`: the replication phases alone
 * (bursts, latency, backlogs, fan-out, and where Capra's batches spend their
 * time), Capra and Bucardo where it is installed, for trying a change to the
 * apply. About 5 minutes with Bucardo.
 */
async function onlyApply(): Promise<void> {
  await withTwoServers('apply', async (a, b, dir) => {
    const found = findBucardo();
    let bucardo: Bucardo | null = null;
    try {
      if ('missing' in found) console.log(`Bucardo not measured: ${found.missing} (bench/README.md says how to install it)`);
      else bucardo = await Bucardo.setUp({ workDir: path.join(dir, 'bucardo'), bin: found.bin, pgBin: found.pgBin, log: progress });
      const tools: Tool[] = [new CapraTool(dir), ...(bucardo ? [new BucardoTool(bucardo)] : [])];
      const { through, backlog, fanOut } = await replicationPhases(tools, a, b);
      const phases = await benchPhases({ source: side(a), target: side(b), rows: sizes.burst, workDir: dir, progress });
      const rows = [...burstRows(through), ...backlogRows(backlog, loadSizes.backlog), ...fanOutRows(fanOut, loadSizes.fanOutNodes, loadSizes.fanOutRows)];
      console.log(`\n${formatTable(rows)}`);
      printBursts(through);
      printLoadPhases(backlog, fanOut);
      printPhases(phases);
    } finally {
      await bucardo?.close();
    }
  });
}

/** The writer phase's options: servers a (source) and b (target), this run's sizes. */
function writersOptions(pgbench: string, a: Cluster, b: Cluster, tools: Tool[], split: Awaited<ReturnType<typeof cpuSplit>>, dir: string): WritersOptions {
  return {
    pgbench,
    source: side(a),
    target: side(b),
    scale: sizes.scale,
    clients: sizes.clients,
    pollClients: sizes.pollClients,
    seconds: sizes.seconds,
    warmUpSeconds: sizes.warmUpSeconds,
    rounds: sizes.rounds,
    tools,
    pinning: 'missing' in split ? null : split,
    pids: { source: a.pid, target: b.pid },
    workDir: dir,
    progress,
  };
}

/** `--only kick`'s sizes: 64 clients, pinned, as the full run's kick cost; more and shorter rounds, paired. */
const kickSizes = quick ? { pollClients: [64], seconds: 5, rounds: 2 } : { pollClients: [64], seconds: 20, rounds: 8 };

/**
 * `npm run bench -- --only kick [--quick]`: the kick cost alone, Capra only:
 * pgbench at 64 clients, pinned, on the kicked and the polling database in
 * turns, and each round's cost from its own pair (see kickPairRows). About
 * 10 minutes (half a minute with --quick).
 */
async function onlyKick(): Promise<void> {
  await withTwoServers('kick', async (a, b, dir) => {
    const pgbench = findPgbench();
    if (!pgbench) throw new Error('pgbench not found: set PG_BIN, or apt-get install postgresql-15 (bench/README.md)');
    const split = await cpuSplit();
    if ('missing' in split) console.log(`kick pairs not pinned: ${split.missing}`);
    const o = { ...writersOptions(pgbench, a, b, [new CapraTool(dir)], split, dir), ...kickSizes, clients: kickSizes.pollClients, kickPairs: true };
    const tps = await benchWriters(o);
    console.log(`\n${formatTable(kickPairRows(tps, kickSizes.pollClients))}`);
    for (const line of writerRunLines(tps)) console.log(line);
    for (const clients of kickSizes.pollClients) {
      const costs = pairedKickCosts(tps, 'Capra', clients);
      console.log(`  Capra kick cost per round, ${clients} clients: ${costs.map((c) => `${c.toFixed(1)}%`).join(', ')}`);
    }
    const date = new Date().toISOString();
    const file = path.join(packageRoot(), 'bench', 'results', `${date.replace(/[:.]/g, '-')}-kick${quick ? '-quick' : ''}.json`);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify({ date, quick, kickSizes, settings: SERVER_SETTINGS, pinning: 'missing' in split ? null : split, tps }, null, 2));
    console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
  });
}

/** `npm run bench -- --only writers [--quick]`: the writer phase alone, Capra only, for trying a change to what writers pay. */
async function onlyWriters(): Promise<void> {
  await withTwoServers('writers', async (a, b, dir) => {
    const pgbench = findPgbench();
    if (!pgbench) throw new Error('pgbench not found: set PG_BIN, or apt-get install postgresql-15 (bench/README.md)');
    const tps = await benchWriters(writersOptions(pgbench, a, b, [new CapraTool(dir)], await cpuSplit(), dir));
    console.log(`\n${formatTable(writerRows(tps, sizes.clients, sizes.pollClients))}`);
    for (const line of writerRunLines(tps)) console.log(line);
  });
}

/** Runs `fn` on two fresh durable servers (source a, target b) in a work directory of their own; stops and removes them after. */
async function withTwoServers(phase: string, fn: (a: Cluster, b: Cluster, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-bench-'));
  const clusters: Cluster[] = [];
  try {
    const bin = process.env.PG_BIN ?? embeddedBinDir();
    clusters.push(...(await Promise.all(['a', 'b'].map((n) => startCluster({ binDir: bin, dataDir: path.join(dir, n), settings: SERVER_SETTINGS })))));
    const [a, b] = clusters as [Cluster, Cluster];
    console.log(`capra bench --only ${phase}${quick ? ' --quick' : ''}: PostgreSQL ${a.major} (two servers, fsync on), ${cpus().length} cores`);
    await fn(a, b, dir);
  } finally {
    await Promise.all(clusters.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (only !== null) {
    if (only === 'compare') return onlyCompare();
    if (only === 'writers') return onlyWriters();
    if (only === 'apply') return onlyApply();
    if (only === 'kick') return onlyKick();
    throw new Error(`--only: the phases that run alone are: compare, writers, apply, kick (got ${JSON.stringify(only)})`);
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-bench-'));
  const bin = process.env.PG_BIN ?? embeddedBinDir();
  const pgbench = findPgbench();
  const psql = findPgTool('psql');
  if (!pgbench) throw new Error('pgbench not found: set PG_BIN, or apt-get install postgresql-15 (bench/README.md)');
  const found = findBucardo();
  const clusters: Cluster[] = [];
  let bucardo: Bucardo | null = null;
  const started = Date.now();
  try {
    clusters.push(...(await Promise.all(['a', 'b'].map((n) => startCluster({ binDir: bin, dataDir: path.join(dir, n), settings: SERVER_SETTINGS })))));
    const [a, b] = clusters as [Cluster, Cluster];
    const machine = `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`;
    console.log(`capra bench${quick ? ' --quick' : ''}: PostgreSQL ${a.major} (two servers, fsync on), ${machine}`);
    if ('missing' in found) console.log(`Bucardo not measured: ${found.missing} (bench/README.md says how to install it)`);
    else bucardo = await Bucardo.setUp({ workDir: path.join(dir, 'bucardo'), bin: found.bin, pgBin: found.pgBin, log: progress });
    const tools: Tool[] = [new CapraTool(dir), ...(bucardo ? [new BucardoTool(bucardo)] : [])];

    // Replication first, on servers nothing else has loaded yet: the pgbench
    // phase leaves autovacuum work behind that competes for the CPUs.
    const { through, backlog, fanOut } = await replicationPhases(tools, a, b);
    progress(`clone: ${(sizes.cloneScale * 100_000).toLocaleString('en-US')} rows, raw pipe and capra clone`);
    const clone = await benchClone({
      source: await createDb(a, 'clone_src'),
      target: await createDb(b, 'clone_dst'),
      target2: await createDb(b, 'clone_dst2'),
      workDir: dir,
      scale: sizes.cloneScale,
      runs: sizes.cloneRuns,
      pgbench,
      psql,
    });
    const bucardoCopySeconds = null;
    const phases: PhaseFigure[] = await benchPhases({ source: side(a), target: side(b), rows: sizes.burst, workDir: dir, progress });
    const compare: CompareFigure = await benchCompare({
      source: side(a),
      target: side(b),
      rows: compareRows,
      pins: await comparePins(a, b),
      workDir: dir,
      progress,
    });
    const split = await cpuSplit();
    if ('missing' in split) console.log(`writers not pinned: ${split.missing}`);
    // A tool failing in the writer phase (Bucardo's capture-only sync once
    // did not answer a kick after the warm-up) must not take the figures of
    // the phases before it along: the writer rows are n/a, the failure is
    // printed and kept in the JSON, and the bench exits 1.
    let tps: TpsFigure[] = [];
    let writersFailed: string | null = null;
    try {
      tps = await benchWriters(writersOptions(pgbench, a, b, tools, split, dir));
    } catch (err) {
      writersFailed = err instanceof Error ? err.message : String(err);
      console.log(`\nwriters phase failed, its figures are n/a: ${writersFailed}`);
    }

    const rows = tableRows(tps, through, clone, bucardoCopySeconds);
    rows.push(...backlogRows(backlog, loadSizes.backlog), ...fanOutRows(fanOut, loadSizes.fanOutNodes, loadSizes.fanOutRows));
    const date = new Date().toISOString();
    console.log(`\n${formatTable(rows)}`);
    console.log(
      `\nratio: Capra over Bucardo for TPS and rows/s, Bucardo over Capra for ms and cost; above 1, Capra does better.` +
        `\n(%) after TPS: share of the TPS with no triggers. Bench took ${Math.round((Date.now() - started) / 1000)} s; ${date}, ${machine}.`,
    );
    console.log('\nTPS per round (best counts), and seconds the target needed after each run to have every transaction:');
    for (const line of writerRunLines(tps)) console.log(line);
    if (!('missing' in split))
      console.log(`pinned: pgbench and the source server on CPUs ${split.writer}; the daemon and the target server on ${split.replication}`);
    printBursts(through);
    printLoadPhases(backlog, fanOut);
    printPhases(phases);
    console.log(`\ncapra compare (one table): ${compareLine(compare)}`);

    const out = path.join(packageRoot(), 'bench', 'results');
    await mkdir(out, { recursive: true });
    const file = path.join(out, `${date.replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
    const table = rows.map((r) => ({ ...r, ratio: ratio(r) }));
    await writeFile(
      file,
      JSON.stringify(
        {
          date,
          quick,
          machine,
          postgres: a.major,
          bucardo: bucardo?.version ?? null,
          sizes,
          settings: SERVER_SETTINGS,
          table,
          tps,
          writersFailed,
          throughput: through,
          pinning: 'missing' in split ? { pinned: false, why: split.missing } : { pinned: true, ...split },
          phases,
          compare,
          clone,
          loadSizes,
          backlog,
          fanOut,
        },
        null,
        2,
      ),
    );
    console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
    if (writersFailed !== null) {
      console.error('bench failed: the writer phase failed (above); the other figures are written');
      process.exitCode = 1;
    }
  } finally {
    await bucardo?.close();
    await Promise.all(clusters.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
