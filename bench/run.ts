// `npm run bench [-- --quick]`: starts its own PostgreSQL servers, measures,
// prints a table and writes it as JSON under bench/results/.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Cluster, embeddedBinDir, startCluster } from '../orchestrator/src/embedded/cluster.js';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { type CaptureFigures, benchCapture } from './capture.js';
import { type CloneFigures, benchClone } from './clone.js';
import { findPgTool, findPgbench } from './pgbench.js';
import { type KickFigures, benchKick } from './kick.js';
import { type ConvergenceFigures, benchConvergence } from './convergence.js';
import { benchReplication } from './replication.js';
import { type SwapFigures, benchSwap } from './swap.js';
import type { BurstFigure } from './burst.js';

const quick = process.argv.includes('--quick');
const sizes = quick
  ? { clients: 4, seconds: 3, bulkRows: 20_000, burst: 20_000, trials: 15, kickClients: 64, kickSeconds: 3, cloneScale: 2, cloneRuns: 3 }
  : { clients: 4, seconds: 10, bulkRows: 100_000, burst: 100_000, trials: 40, kickClients: 64, kickSeconds: 10, cloneScale: 10, cloneRuns: 7 };

async function createDb(c: Cluster, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: c.url('postgres') });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  return c.url(name);
}

/** The clone section: the raw pipe, the clone a -> b (and its share of the pipe's rate), and a -> b and c. */
function printClone(c: CloneFigures): void {
  const line = (label: string, text: string): string => `  ${label.padEnd(38)}${text}`;
  const figure = (s: number, mbps: number): string => `${s.toFixed(2).padStart(6)} s  ${mbps.toFixed(1).padStart(6)} MB/s`;
  console.log(`\nClone of pgbench_accounts (${c.rows.toLocaleString('en-US')} rows, ${(c.bytes / 1e6).toFixed(1)} MB of COPY text; median of ${c.runs}; MB/s of COPY text)`);
  console.log(line('raw pipe psql | psql, text:', c.pipeSeconds === null ? 'skipped (psql not found)' : figure(c.pipeSeconds, c.pipeMBps!)));
  console.log(line('raw pipe psql | psql, binary:', c.binaryPipeSeconds === null ? 'skipped (psql not found)' : figure(c.binaryPipeSeconds, c.binaryPipeMBps!)));
  const pct = (x: number | null): string => (x === null ? 'n/a' : `${Math.round(x * 100)}%`);
  const share = c.cloneVsPipe === null ? '' : `  (${pct(c.cloneVsPipe)} of the text pipe, ${pct(c.cloneVsBinaryPipe)} of the binary one)`;
  console.log(line(`capra clone (a -> b, ${c.cloneFormat}):`, figure(c.cloneSeconds, c.cloneMBps) + share));
  console.log(line('capra clone (a -> b and c, one read):', `${figure(c.twoTargetSeconds, c.twoTargetMBps)} per target`));
}

const burstText = (b: BurstFigure): string =>
  `${b.seconds.toFixed(2).padStart(6)} s ${b.rowsPerSecond.toLocaleString('en-US').padStart(8)} rows/s${b.writeSeconds > 0 ? `  (written in ${b.writeSeconds.toFixed(2)} s)` : ''}`;

/** The multi-master section: each burst on each sync shape (2 sources, 3 sources), and the convergence test. */
function printSwap(swaps: SwapFigures[], rows: number, convergence: ConvergenceFigures | null): void {
  const n = rows.toLocaleString('en-US');
  const half = Math.floor(rows / 2).toLocaleString('en-US');
  console.log(`\nMulti-master replication (every node a source; from the first commit until every other node has the rows, then equal by checksum)`);
  for (const s of swaps) {
    const line = (label: string, b: BurstFigure): void => console.log(`  ${`${s.nodes} sources, ${label}:`.padEnd(52)}${burstText(b)}`);
    line(`${n} rows on a, transactions of 1,000`, s.batched);
    line(`${n} rows on a, one transaction`, s.oneTransaction);
    line(`${half} on a + ${half} on b at once`, s.bothSides);
  }
  console.log(
    convergence === null
      ? `  convergence test: skipped (--quick)`
      : `  convergence test (3 sources, 6 strategies): ${convergence.seconds} s, ${convergence.result}${convergence.ok ? '' : '  FAILED'}`,
  );
  if (convergence?.outputTail) console.log(`\nconvergence test output (last lines):\n${convergence.outputTail}`);
}

function row(cells: (string | number | null)[], widths: number[]): string {
  return cells.map((c, i) => String(c ?? 'n/a').padEnd(widths[i]!)).join('  ');
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-bench-'));
  const bin = process.env.PG_BIN ?? embeddedBinDir();
  const pgbench = findPgbench();
  const psql = findPgTool('psql');
  const clusters: Cluster[] = [];
  try {
    clusters.push(...(await Promise.all(['a', 'b', 'c'].map((n) => startCluster({ binDir: bin, dataDir: path.join(dir, n) })))));
    const [a, b, c] = clusters as [Cluster, Cluster, Cluster];
    console.log(`capra bench${quick ? ' --quick' : ''}: PostgreSQL ${a.major}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`);
    if (!pgbench) console.log('pgbench not found (set PG_BIN, or apt-get install postgresql-15): TPS figures are skipped');
    if (!psql) console.log('psql not found (set PG_BIN, or apt-get install postgresql-15): the raw pipe figure of the clone is skipped');

    // Replication first, on servers nothing else has loaded yet: the pgbench phases
    // below leave autovacuum work behind that competes for the CPUs.
    process.stdout.write('  replication: burst and latency...\n');
    const replication = await benchReplication({
      source: await createDb(a, 'bench_src'),
      target: await createDb(b, 'bench_dst'),
      workDir: dir,
      rows: sizes.burst,
      trials: sizes.trials,
    });
    const swaps: SwapFigures[] = [];
    for (const nodes of [[a, b], [a, b, c]]) {
      process.stdout.write(`  multi-master: ${nodes.length} sources, bursts...\n`);
      const dbs: Record<string, string> = {};
      for (const [i, cluster] of nodes.entries()) {
        const node = 'abc'[i]!;
        dbs[node] = await createDb(cluster, `swap${nodes.length}_${node}`);
      }
      swaps.push(await benchSwap({ name: `bench_swap${nodes.length}`, nodes: dbs, workDir: dir, rows: sizes.burst }));
    }
    // Before the pgbench phases too, for the same reason.
    process.stdout.write(`  clone: ${(sizes.cloneScale * 100_000).toLocaleString('en-US')} rows, raw pipe and capra clone...\n`);
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
    const capture: CaptureFigures[] = [];
    const capUrl = await createDb(a, 'bench_capture');
    for (const mode of ['none', 'row', 'statement'] as const) {
      process.stdout.write(`  capture: ${mode}...\n`);
      capture.push(await benchCapture({ url: capUrl, pgbench, clients: sizes.clients, seconds: sizes.seconds, bulkRows: sizes.bulkRows, scriptDir: dir }, mode));
    }

    const kicks: KickFigures[] = [];
    if (pgbench) {
      for (const mode of ['none', 'capture only', 'capture + notify', 'capture + cron'] as const) {
        process.stdout.write(`  kick: ${mode}...\n`);
        const tag = mode.replace(/\W/g, '');
        kicks.push(
          await benchKick({
            mode,
            source: await createDb(a, `kick_src_${tag}`),
            target: await createDb(b, `kick_dst_${tag}`),
            workDir: dir,
            pgbench,
            clients: sizes.kickClients,
            seconds: sizes.kickSeconds,
            rows: sizes.bulkRows,
          }),
        );
      }
    }

    // Last, on a machine the phases above no longer load; it starts its own clusters.
    let convergence: ConvergenceFigures | null = null;
    if (!quick) {
      process.stdout.write('  convergence test...\n');
      convergence = await benchConvergence();
    }

    const base = capture[0]!;
    const pct = (x: number | null, y: number | null): string => (x && y ? `${Math.round((x / y) * 100)}%` : 'n/a');
    const widths = [12, 18, 18, 16, 16];
    console.log(`\nCapture overhead (${sizes.clients} pgbench clients, ${sizes.seconds} s each; bulk = one statement over ${sizes.bulkRows} rows, median of 3)`);
    console.log(row(['triggers', 'update TPS', 'insert TPS', 'bulk update ms', 'bulk insert ms'], widths));
    for (const c of capture) {
      console.log(
        row(
          [
            c.mode,
            c.updateTps === null ? null : `${Math.round(c.updateTps)} (${pct(c.updateTps, base.updateTps)})`,
            c.insertTps === null ? null : `${Math.round(c.insertTps)} (${pct(c.insertTps, base.insertTps)})`,
            Math.round(c.bulkUpdateMs),
            Math.round(c.bulkInsertMs),
          ],
          widths,
        ),
      );
    }
    if (kicks.length > 0) {
      console.log(`\nKick modes (${sizes.kickClients} pgbench clients, ${sizes.kickSeconds} s each, single-row UPDATE on a replicated table; daemon applying in the last two)`);
      for (const k of kicks) console.log(`  ${k.mode.padEnd(18)} ${Math.round(k.tps)} TPS (${pct(k.tps, kicks[0]!.tps)})`);
    }
    console.log(`\nOne-way replication`);
    console.log(`  ${replication.burstRows}-row update in one transaction: applied in ${replication.burstSeconds} s = ${replication.burstRowsPerSecond} rows/s`);
    const batched = replication.batchedBurst;
    console.log(`  ${batched.rows} single-row updates in transactions of 1,000: applied in ${batched.seconds} s = ${batched.rowsPerSecond} rows/s (written in ${batched.writeSeconds} s)`);
    console.log(`  single-row insert until visible on the target (${replication.latencyTrials} trials): p50 ${replication.latencyP50Ms} ms, p95 ${replication.latencyP95Ms} ms`);
    printSwap(swaps, sizes.burst, convergence);
    printClone(clone);

    const out = path.join(packageRoot(), 'bench', 'results');
    await mkdir(out, { recursive: true });
    const file = path.join(out, `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
    await writeFile(file, JSON.stringify({ date: new Date().toISOString(), quick, postgres: a.major, cores: cpus().length, sizes, capture, kicks, replication, swaps, convergence, clone }, null, 2));
    console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
  } finally {
    await Promise.all(clusters.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
