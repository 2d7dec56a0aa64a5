// `npm run bench:capture [-- --quick]`: what the capture trigger costs the
// writers, and what each way of capturing would cost instead (issue 13's
// candidates), on one durable server with pgbench's TPC-B-like transaction.
// Every candidate gets its own database cloned from one pgbench template;
// the rounds are interleaved (each round runs every candidate once, in a
// rotated order) and each figure is the median TPS over the rounds, as a
// share of the median of the database without triggers. The server and
// pgbench are pinned to the writer side's cores (bench/pinning.ts) where the
// machine allows, so the figure is what writers pay, not what a neighbour
// took. No daemon runs: this is capture only.
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { embeddedBinDir, startCluster } from '../orchestrator/src/embedded/cluster.js';
import { install } from '../orchestrator/src/install/install.js';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { Connections } from '../orchestrator/src/db/connections.js';
import { addTriggers } from '../orchestrator/src/triggers/sync-triggers.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { findPgbench, pgbenchInit, pgbenchTps } from './pgbench.js';
import { cpuSplit, pinServer, postmasterPid } from './pinning.js';
import { run as exec } from './writers.js';
import { median } from './table.js';
import { KICK_WINDOW_MS } from '../orchestrator/src/db/kick-timing.js';

const USAGE = 'usage: npm run bench:capture [-- --quick] [--only word,word] [--clients N]';
const args = process.argv.slice(2);
const onlyAt = args.indexOf('--only');
const clientsAt = args.indexOf('--clients');
/** --clients: pgbench's client count (default 4, the issue's; 64 shows what contention on shared state costs). */
const clients = clientsAt >= 0 ? Number(args[clientsAt + 1]) : 4;
if (!Number.isInteger(clients) || clients < 1) {
  console.error(`bench:capture: --clients needs a whole number of clients, 1 or more (${USAGE})`);
  process.exit(2);
}
/** --only: the candidates whose name contains one of these words (the control always runs). */
const only = onlyAt >= 0 ? (args[onlyAt + 1] ?? '').split(',').filter((w) => w !== '') : [];
if (onlyAt >= 0 && only.length === 0) {
  console.error(`bench:capture: --only needs words naming candidates (${USAGE})`);
  process.exit(2);
}
/** Argument positions taken by an option and its value. */
const taken = [onlyAt, clientsAt].filter((at) => at >= 0).flatMap((at) => [at, at + 1]);
const unknown = args.filter((a, i) => a !== '--quick' && !taken.includes(i));
if (unknown.length > 0) {
  console.error(`bench:capture: unknown argument ${unknown[0]} (${USAGE})`);
  process.exit(2);
}
const quick = args.includes('--quick');
const opts = quick ? { scale: 1, seconds: 5, rounds: 3, clients } : { scale: 10, seconds: 20, rounds: 5, clients };
const SERVER_SETTINGS = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '1GB', max_wal_size: '4GB' };
const TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'];

/** Capra's capture on `db` (row or statement mode), with an empty target database beside it for the sync. */
async function capra(url: (db: string) => string, db: string, workDir: string, mode: 'row' | 'statement' = 'row'): Promise<void> {
  const cfg = parseConfigText(
    [
      `name: ${db}`,
      'databases:',
      `  a: ${url(db)}`,
      `  b: ${url(`${db}_t`)}`,
      'syncs:',
      `  s: { sources: [a], targets: [b], tables: { include: [${TABLES.map((t) => `public.${t}`).join(', ')}] } }`,
      `run_dir: ${JSON.stringify(workDir)}`,
      `log_dir: ${JSON.stringify(workDir)}`,
    ].join('\n'),
    path.join(workDir, `${db}.yml`),
  );
  await install(cfg, silentLogger);
  const conns = new Connections(cfg, 'capra-cli', silentLogger);
  try {
    await addTriggers(cfg, cfg.syncs.s!, conns, silentLogger, { mode });
  } finally {
    await conns.close();
  }
}

/** Rewrites each generated capture function of `db` with `edit` (its CREATE OR REPLACE text in, the new text out). */
async function editCapture(url: string, edit: (def: string, relid: number) => string): Promise<void> {
  const fns = await exec(
    url,
    `SELECT pg_get_functiondef(p.oid) AS def, substr(p.proname, 9)::int AS relid FROM pg_proc p
      WHERE p.pronamespace = 'repl'::regnamespace AND p.proname ~ '^capture_[0-9]+$'`,
  );
  for (const f of fns) {
    const def = edit(f.def as string, f.relid as number);
    if (def === f.def) throw new Error('a capture candidate changed nothing in a capture function');
    await exec(url, def);
  }
}

/** Writes `db`'s capture functions again with no job kicked (the consumers' kick off while they are written, then back on). */
async function captureWithoutKick(url: string): Promise<void> {
  await exec(url, 'UPDATE repl.consumer SET kick = false', `SELECT repl.refresh_kicks(${KICK_WINDOW_MS})`, 'UPDATE repl.consumer SET kick = true');
}

/** How each candidate is made on its (fresh, pgbench-filled) database. */
const candidates: Record<string, (url: (db: string) => string, db: string, dir: string) => Promise<void>> = {
  'no triggers (control)': async () => {},
  'floor: a row trigger inserting a constant row': async (url, db) => {
    await exec(
      url(db),
      'CREATE TABLE floor_log (x int)',
      'CREATE FUNCTION floor_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO floor_log VALUES (1); RETURN NULL; END$$',
      ...TABLES.map((t) => `CREATE TRIGGER floor AFTER INSERT OR UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION floor_row()`),
    );
  },
  // Below the floor: what calling a PL/pgSQL row trigger costs by itself, so the floor's share splits into the call and the insert.
  'floor: a row trigger that does nothing': async (url, db) => {
    await exec(
      url(db),
      'CREATE FUNCTION floor_none() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$',
      ...TABLES.map((t) => `CREATE TRIGGER floor AFTER INSERT OR UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION floor_none()`),
    );
  },
  'Capra as shipped (row triggers, jsonb key, btree on txid, kick)': (url, db, dir) => capra(url, db, dir),
  'Capra without the kick (no kick in the capture function)': async (url, db, dir) => {
    await capra(url, db, dir);
    await captureWithoutKick(url(db));
  },
  'Capra, kick that checks its clock but never notifies': async (url, db, dir) => {
    await capra(url, db, dir);
    await editCapture(url(db), (def) => def.replace(/PERFORM pg_notify\([^;]*\);/g, 'NULL;'));
  },
  // The kick clock's last value kept in a session setting: a write reads the clock's sequence only once the
  // value it last saw is a window old, with the time as float8 (date_part) rather than numeric (extract).
  'Capra, kick clock seen once per window per session': async (url, db, dir) => {
    await capra(url, db, dir);
    await editCapture(url(db), (def) =>
      def.replace(
        /ELSIF \(extract\(epoch FROM clock_timestamp\(\)\) \* 1000\)::bigint - coalesce\(pg_sequence_last_value\('repl\.(kick_clock_\d+)'::regclass\), 0\) >= (\d+) THEN\n {4}PERFORM setval\('repl\.kick_clock_\d+'::regclass, \(extract\(epoch FROM clock_timestamp\(\)\) \* 1000\)::bigint\);\n((?: {4}PERFORM pg_notify\([^\n]*\n?)+)/,
        (_m, clock: string, w: string, notify: string) =>
          `ELSIF (date_part('epoch', clock_timestamp()) * 1000)::bigint - coalesce(nullif(current_setting('capra.${clock}', true), '')::bigint, 0) >= ${w} THEN\n` +
          `    IF (date_part('epoch', clock_timestamp()) * 1000)::bigint - coalesce(pg_sequence_last_value('repl.${clock}'::regclass), 0) >= ${w} THEN\n` +
          `      PERFORM setval('repl.${clock}'::regclass, (date_part('epoch', clock_timestamp()) * 1000)::bigint);\n` +
          `  ${notify.trimEnd().replaceAll('\n', '\n  ')}\n` +
          `    END IF;\n` +
          `    PERFORM set_config('capra.${clock}', coalesce(pg_sequence_last_value('repl.${clock}'::regclass), 0)::text, false);\n`,
      ),
    );
  },
  // pg_sequence_last_value takes the clock's buffer lock exclusively (it may set hint bits), in every
  // captured row of every session: read the clock by a query instead, under a shared lock.
  'Capra, kick clock read by SELECT': async (url, db, dir) => {
    await capra(url, db, dir);
    await editCapture(url(db), (def) =>
      def.replace(/coalesce\(pg_sequence_last_value\('repl\.(kick_clock_\d+)'::regclass\), 0\) >= /, '(SELECT last_value FROM repl.$1) >= '),
    );
  },
  // A kick at most every 250 ms per table rather than 100 (fewer NOTIFYs and setvals; as many clock reads).
  'Capra, kick window 250 ms': async (url, db, dir) => {
    await capra(url, db, dir);
    await editCapture(url(db), (def) => def.replace(/(pg_sequence_last_value\('repl\.kick_clock_\d+'::regclass\), 0\)) >= \d+ THEN/, '$1 >= 250 THEN'));
  },
  // As before 2026-12-06: the capture function without the kick, and a statement-level kick trigger calling repl.make_kick's
  // function (which make_kick writes only for a table without the row capture trigger: that one is put back after).
  'Capra, kick in a statement trigger of its own (as before 2026-12-06)': async (url, db, dir) => {
    await capra(url, db, dir);
    await captureWithoutKick(url(db));
    const rows = await exec(url(db), `SELECT tgrelid::regclass::text AS rel, tgfoid::regproc::text AS fn FROM pg_trigger WHERE tgname = 'capra_capture_row'`);
    for (const r of rows) {
      await exec(url(db), `DROP TRIGGER capra_capture_row ON ${r.rel}`);
      const [kick] = await exec(url(db), `SELECT repl.make_kick('${r.rel}'::regclass, ${KICK_WINDOW_MS}) AS fn`);
      await exec(
        url(db),
        `CREATE TRIGGER capra_kick AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${r.rel} FOR EACH STATEMENT EXECUTE FUNCTION repl.${kick!.fn}()`,
        `CREATE TRIGGER capra_capture_row AFTER INSERT OR UPDATE OR DELETE ON ${r.rel} FOR EACH ROW EXECUTE FUNCTION ${r.fn}()`,
        `ALTER TABLE ${r.rel} ENABLE ALWAYS TRIGGER capra_kick`,
      );
    }
    const bodies = await exec(url(db), `SELECT count(*)::int AS n FROM pg_proc WHERE proname ~ '^kick_[0-9]+$' AND prosrc ~ 'pg_notify'`);
    if (bodies[0]!.n !== TABLES.length) throw new Error('the kick-trigger candidate made no kick functions that notify');
  },
  // An applier that does not cascade captures nothing: a WHEN spares its rows the PL/pgSQL call (a
  // multi-master receiver is also a source). On one trigger that fires always, the WHEN costs a user's
  // rows its evaluation before the call; as shipped, only capra_capture_replica has it, and a user's
  // write (origin role) meets the ordinary capra_capture_row, without.
  'Capra, capture behind a WHEN that skips the calls for appliers': async (url, db, dir) => {
    await capra(url, db, dir);
    const rows = await exec(url(db), `SELECT tgrelid::regclass::text AS rel, tgfoid::regproc::text AS fn FROM pg_trigger WHERE tgname = 'capra_capture_row'`);
    for (const r of rows) {
      await exec(
        url(db),
        `DROP TRIGGER capra_capture_row ON ${r.rel}`,
        `DROP TRIGGER IF EXISTS capra_capture_replica ON ${r.rel}`,
        `CREATE TRIGGER capra_capture_row AFTER INSERT OR UPDATE OR DELETE ON ${r.rel} FOR EACH ROW
           WHEN (coalesce(current_setting('capra.origin', true), '') = '' OR current_setting('capra.cascade', true) = 'on')
           EXECUTE FUNCTION ${r.fn}()`,
        `ALTER TABLE ${r.rel} ENABLE ALWAYS TRIGGER capra_capture_row`,
      );
    }
  },
  'Capra, delta without an index': async (url, db, dir) => {
    await capra(url, db, dir);
    await exec(url(db), 'DROP INDEX repl.delta_txid_idx');
  },
  // xid8 has no BRIN operator class; the change's clock, which grows with it, stands in.
  'Capra, BRIN on the change time instead of btree on txid': async (url, db, dir) => {
    await capra(url, db, dir);
    await exec(url(db), 'DROP INDEX repl.delta_txid_idx', 'CREATE INDEX delta_at_brin ON repl.delta USING brin (at)');
  },
  'Capra, key as text': async (url, db, dir) => {
    await capra(url, db, dir);
    await exec(url(db), 'ALTER TABLE repl.delta ADD COLUMN pkt text');
    await editCapture(url(db), (def) =>
      def.replace(
        /\(relid, op, pk, origin\) VALUES \((\d+), '(.)', jsonb_build_object\('[^']+', (NEW|OLD)\.([\w"]+)\), (nullif\(current_setting\('capra\.origin', true\), ''\))\)/g,
        "(relid, op, pkt, origin) VALUES ($1, '$2', ($3.$4)::text, $5)",
      ),
    );
  },
  'Capra, one delta table per table': async (url, db, dir) => {
    await capra(url, db, dir);
    const rels = await exec(url(db), `SELECT DISTINCT relid::int AS relid FROM repl.consumer_table`);
    for (const r of rels) await exec(url(db), `CREATE TABLE repl.delta_${r.relid} (LIKE repl.delta INCLUDING ALL)`);
    await editCapture(url(db), (def, relid) => def.replaceAll('INSERT INTO repl.delta ', `INSERT INTO repl.delta_${relid} `));
  },
  'Capra, statement triggers (transition tables)': (url, db, dir) => capra(url, db, dir, 'statement'),
};

async function main(): Promise<void> {
  const pgbench = findPgbench();
  if (!pgbench) throw new Error('pgbench not found: set PG_BIN, or apt-get install postgresql-15 (bench/README.md)');
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-capture-'));
  const c = await startCluster({ binDir: process.env.PG_BIN ?? embeddedBinDir(), dataDir: path.join(dir, 'a'), settings: SERVER_SETTINGS });
  try {
    const split = await cpuSplit();
    const pinned = 'missing' in split ? null : split;
    if (pinned) await pinServer(await postmasterPid(path.join(dir, 'a')), pinned.writer);
    const where = pinned ? `server and pgbench pinned to CPU ${pinned.writer}` : `unpinned (${'missing' in split ? split.missing : ''})`;
    console.log(
      `capture candidates: PostgreSQL ${c.major}, fsync on, pgbench scale ${opts.scale}, ${opts.clients} clients, ${opts.seconds} s x ${opts.rounds} rounds, ${where}`,
    );
    const admin = c.url('postgres');
    await exec(admin, 'CREATE DATABASE cand_template');
    await pgbenchInit(pgbench, c.url('cand_template'), opts.scale);
    await exec(c.url('cand_template'), 'ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY');
    const names = Object.keys(candidates).filter((n, i) => i === 0 || only.length === 0 || only.some((w) => n.includes(w)));
    if (names.length === 1) throw new Error(`--only ${only.join(',')}: no candidate's name contains any of these words`);
    const dbs = names.map((_, i) => `cand_${i}`);
    for (const [i, name] of names.entries()) {
      await exec(admin, `CREATE DATABASE ${dbs[i]} TEMPLATE cand_template`, `CREATE DATABASE ${dbs[i]}_t TEMPLATE cand_template`);
      await candidates[name]!((db) => c.url(db), dbs[i]!, dir);
      await exec(c.url(dbs[i]!), 'VACUUM ANALYZE');
    }
    const tps: number[][] = names.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      for (let k = 0; k < names.length; k++) {
        const i = (k + round) % names.length;
        const url = c.url(dbs[i]!);
        // Each run from the same start: an empty log, nothing left for autovacuum, a fresh checkpoint.
        await exec(url, `DO $$BEGIN IF to_regclass('repl.delta') IS NOT NULL THEN TRUNCATE repl.delta; END IF; END$$`, 'VACUUM', 'CHECKPOINT');
        const r = await pgbenchTps(pgbench, { url, clients: opts.clients, seconds: opts.seconds, scriptDir: dir, cpus: pinned?.writer });
        tps[i]!.push(r);
        process.stdout.write(`  round ${round + 1}: ${names[i]}: ${r.toFixed(0)} TPS\n`);
      }
    }
    const control = median(tps[0]!);
    const rows = names.map((name, i) => ({ candidate: name, tps: tps[i]!, median: median(tps[i]!), share: median(tps[i]!) / control }));
    console.log(`\n${'candidate'.padEnd(66)} ${'TPS (median)'.padStart(12)} ${'share'.padStart(6)}`);
    for (const r of rows) console.log(`${r.candidate.padEnd(66)} ${r.median.toFixed(0).padStart(12)} ${r.share.toFixed(2).padStart(6)}`);
    const out = path.join(packageRoot(), 'bench', 'results');
    await mkdir(out, { recursive: true });
    const file = path.join(out, `${new Date().toISOString().replace(/[:.]/g, '-')}-capture${quick ? '-quick' : ''}.json`);
    const machine = `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`;
    await writeFile(file, JSON.stringify({ date: new Date().toISOString(), quick, machine, postgres: c.major, opts, pinning: pinned, rows }, null, 2));
    console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
  } finally {
    await c.stop();
  }
}

main().catch((err) => {
  console.error(`bench:capture: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
