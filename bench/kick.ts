import pg from 'pg';
import { Daemon } from '../orchestrator/src/daemon/daemon.js';
import { silentLogger } from '../orchestrator/src/util/logger.js';
import { benchJob } from './job.js';
import { pgbenchTps } from './pgbench.js';

/**
 * What kicking costs the writers: pgbench TPS (single-row UPDATE per
 * transaction) on a replicated table with no triggers, with capture only
 * (no daemon, no NOTIFY), capture + notify kicks (daemon applying), and
 * capture + cron polling (daemon applying, no NOTIFY).
 */
export type KickMode = 'none' | 'capture only' | 'capture + notify' | 'capture + cron';

export interface KickFigures {
  mode: KickMode;
  tps: number;
}

async function run(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url, application_name: 'capra-bench' });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export async function benchKick(opts: {
  mode: KickMode;
  source: string;
  target: string;
  workDir: string;
  pgbench: string;
  clients: number;
  seconds: number;
  rows: number;
}): Promise<KickFigures> {
  const table = `CREATE TABLE bench_kick (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL);
                 INSERT INTO bench_kick SELECT g, 0, repeat('x', 80) FROM generate_series(1, ${opts.rows}) g; ANALYZE bench_kick`;
  await run(opts.source, table);
  await run(opts.target, table);
  let daemon: Daemon | null = null;
  if (opts.mode !== 'none') {
    const kick = opts.mode === 'capture + notify' ? 'notify' : '"*/1 * * * * *"';
    const cfg = await benchJob({
      name: `kick${opts.mode.replace(/\W/g, '')}`,
      nodes: { a: opts.source, b: opts.target },
      tables: ['public.bench_kick'],
      workDir: opts.workDir,
      syncExtra: `kick: ${kick}`,
    });
    if (opts.mode !== 'capture only') {
      daemon = new Daemon(cfg, silentLogger);
      daemon.start();
    }
  }
  try {
    const tps = await pgbenchTps(opts.pgbench, {
      url: opts.source,
      clients: opts.clients,
      seconds: opts.seconds,
      scriptDir: opts.workDir,
      script: `\\set id random(1, ${opts.rows})\nUPDATE bench_kick SET v = v + 1 WHERE id = :id;\n`,
    });
    return { mode: opts.mode, tps };
  } finally {
    await daemon?.stop();
  }
}
