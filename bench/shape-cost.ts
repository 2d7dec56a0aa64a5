// `npm run bench:shapes`: what a table's shape costs the apply (README's
// "table shapes"): the same one-way sync of one table, plain (primary key),
// with a row filter matching half the rows, and keyless with whole-row
// identity, on two durable servers. Per shape and round: 20,000 rows
// inserted with the daemon stopped, then the seconds from the daemon's start
// until the target holds what the shape says; then 2,000 rows updated in 40
// transactions, the same way. Rows per second are the source's rows; the
// median of the rounds, which run the shapes interleaved.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { embeddedBinDir, startCluster } from '../orchestrator/src/embedded/cluster.js';
import { install } from '../orchestrator/src/install/install.js';
import { addTriggersForSyncs } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { until } from './burst.js';
import { run as exec } from './writers.js';

const ROWS = 20_000;
const ROUNDS = 3;
const SERVER_SETTINGS = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '1GB', max_wal_size: '4GB' };

const shapes: Record<string, { ddl: string; options: string; where: string }> = {
  plain: { ddl: 'CREATE TABLE x (id int PRIMARY KEY, region text, v int)', options: '', where: '' },
  'filtered (half the rows)': {
    ddl: 'CREATE TABLE x (id int PRIMARY KEY, region text, v int)',
    options: `, options: { public.x: { where: "region = 'eu'" } }`,
    where: ` WHERE region = 'eu'`,
  },
  'whole-row identity (no key)': { ddl: 'CREATE TABLE x (id int, region text, v int)', options: ', options: { public.x: { identity: full } }', where: '' },
};

const state = async (url: string, where: string): Promise<string> => {
  const r = await exec(url, `SELECT count(*)::text || '/' || coalesce(sum(v), 0)::text AS s FROM x${where}`);
  return r[0]!.s as string;
};

/** Seconds from the daemon's start until the target's state equals the source's (as the shape filters it). */
async function applied(cfg: ReturnType<typeof parseConfigText>, a: string, b: string, where: string): Promise<number> {
  const want = await state(a, where);
  const t0 = process.hrtime.bigint();
  const d = new Daemon(cfg, silentLogger);
  d.start();
  try {
    await until(async () => (await state(b, '')) === want, 'the target to catch up', 600_000, 5);
  } finally {
    await d.stop();
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-shapes-'));
  const bin = process.env.PG_BIN ?? embeddedBinDir();
  const [ca, cb] = await Promise.all(['a', 'b'].map((n) => startCluster({ binDir: bin, dataDir: path.join(dir, n), settings: SERVER_SETTINGS })));
  try {
    console.log(`capra bench:shapes: PostgreSQL ${ca!.major}, two servers, fsync on; ${ROWS.toLocaleString('en-US')} rows, ${ROUNDS} rounds`);
    const figures = new Map<string, { insert: number[]; update: number[] }>(Object.keys(shapes).map((s) => [s, { insert: [], update: [] }]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, [name, shape]] of Object.entries(shapes).entries()) {
        const db = `shape${i}_r${round}`;
        await exec(ca!.url('postgres'), `CREATE DATABASE ${db}`);
        await exec(cb!.url('postgres'), `CREATE DATABASE ${db}`);
        const [a, b] = [ca!.url(db), cb!.url(db)];
        await exec(a, shape.ddl);
        await exec(b, shape.ddl);
        const cfg = parseConfigText(
          [
            `name: ${db}`,
            'databases:',
            `  a: ${a}`,
            `  b: ${b}`,
            'syncs:',
            `  s: { sources: [a], targets: [b], copy_data: never, tables: { include: [public.x]${shape.options} } }`,
            `run_dir: ${JSON.stringify(dir)}`,
            `log_dir: ${JSON.stringify(dir)}`,
          ].join('\n'),
          path.join(dir, `${db}.yml`),
        );
        await install(cfg, silentLogger);
        await addTriggersForSyncs(cfg, silentLogger);
        await exec(a, `INSERT INTO x SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, ${ROWS}) g`);
        figures.get(name)!.insert.push(ROWS / (await applied(cfg, a, b, shape.where)));
        for (let tx = 0; tx < 40; tx++) await exec(a, `UPDATE x SET v = v + 1 WHERE id > ${tx * 50} AND id <= ${(tx + 1) * 50}`);
        figures.get(name)!.update.push(2_000 / (await applied(cfg, a, b, shape.where)));
        process.stdout.write(`  round ${round + 1}: ${name} done\n`);
      }
    }
    console.log(`\n${'shape'.padEnd(30)} ${'insert rows/s'.padStart(14)} ${'update rows/s'.padStart(14)}`);
    for (const [name, f] of figures) {
      console.log(
        `${name.padEnd(30)} ${Math.round(median(f.insert)).toLocaleString('en-US').padStart(14)} ${Math.round(median(f.update)).toLocaleString('en-US').padStart(14)}`,
      );
    }
  } finally {
    await Promise.all([ca!.stop(), cb!.stop()]);
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench:shapes: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
