// The version matrix (`npm run test:matrix`): the suite once per supported
// PostgreSQL major as the primary version, each time with a second major for
// the cross-version test (18 beside every older one, 13 beside 18, so 13 <-> 18
// runs both ways), then a table of major, passed, failed, time.
//
//   node dist/test/harness/matrix.js                      every major, whole suite
//   node dist/test/harness/matrix.js --majors 13,16 [FILE...]   some majors, some files
//   node dist/test/harness/matrix.js --cross              only the cross-version test, 13 <-> 18 (CI)
//
// Each run's output goes to .tap/matrix/pg<major>.log; the table says where.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAJORS, binDirFor } from './pg-majors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const LOG_DIR = path.join(ROOT, '.tap', 'matrix');
const CROSS_TEST = 'dist/test/cross-version.test.js';

interface Run {
  primary: number;
  other: number;
  files: string[];
}

interface Result extends Run {
  passed: number;
  failed: number;
  skipped: number;
  seconds: number;
  log: string;
}

const oldest = Math.min(...MAJORS);
const newest = Math.max(...MAJORS);
const partner = (major: number): number => (major === newest ? oldest : newest);

function parseArgs(argv: string[]): Run[] {
  let majors = MAJORS;
  let cross = false;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--cross') cross = true;
    else if (a === '--majors') {
      const list = argv[++i];
      if (!list) throw new Error('--majors needs a list, e.g. --majors 13,16');
      majors = list.split(',').map(Number);
      const bad = majors.find((m) => !MAJORS.includes(m));
      if (bad !== undefined) throw new Error(`--majors: no PostgreSQL ${bad} in the matrix (majors: ${MAJORS.join(', ')})`);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a} (options: --majors LIST, --cross)`);
    else files.push(a);
  }
  if (cross) {
    return [
      { primary: oldest, other: newest, files: [CROSS_TEST] },
      { primary: newest, other: oldest, files: [CROSS_TEST] },
    ];
  }
  return majors.map((m) => ({ primary: m, other: partner(m), files }));
}

/** One `npm test`-equivalent run; its last line is `N passed, N failed, N skipped`. */
async function runSuite(run: Run, log: string): Promise<Result> {
  const [primaryBin, otherBin] = [await binDirFor(run.primary), await binDirFor(run.other)];
  const out = createWriteStream(log);
  const t0 = Date.now();
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'test', 'harness', 'run-suite.js'), ...run.files], {
    cwd: ROOT,
    env: { ...process.env, PG_BIN: primaryBin, PG_OTHER_BIN: otherBin },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let last = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    out.write(chunk);
    last = (last + chunk).slice(-500);
  });
  child.stderr.pipe(out, { end: false });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  await new Promise<void>((resolve) => out.end(resolve));
  const m = /(\d+) passed, (\d+) failed, (\d+) skipped\s*$/.exec(last);
  const [passed, failed, skipped] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 1, 0];
  return { ...run, passed, failed: code !== 0 && failed === 0 ? 1 : failed, skipped, seconds: (Date.now() - t0) / 1000, log };
}

function table(results: Result[]): string {
  const head = ['major', 'other', 'passed', 'failed', 'skipped', 'time', 'log'];
  const rows = results.map((r) => [
    String(r.primary),
    String(r.other),
    String(r.passed),
    String(r.failed),
    String(r.skipped),
    `${Math.round(r.seconds)} s`,
    path.relative(ROOT, r.log),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<number> {
  const runs = parseArgs(process.argv.slice(2));
  await mkdir(LOG_DIR, { recursive: true });
  const results: Result[] = [];
  for (const run of runs) {
    const log = path.join(LOG_DIR, `pg${run.primary}${run.files.length === 1 && run.files[0] === CROSS_TEST ? `-cross-pg${run.other}` : ''}.log`);
    process.stdout.write(`# matrix: PostgreSQL ${run.primary} (other: ${run.other}), ${run.files.length ? run.files.join(' ') : 'every test file'}\n`);
    const r = await runSuite(run, log);
    process.stdout.write(`# matrix: PostgreSQL ${run.primary}: ${r.passed} passed, ${r.failed} failed in ${Math.round(r.seconds)} s\n`);
    results.push(r);
  }
  process.stdout.write(`${table(results)}\n`);
  return results.some((r) => r.failed > 0) ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`matrix: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 2;
}
