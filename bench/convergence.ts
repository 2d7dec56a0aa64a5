import { spawn } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../orchestrator/src/util/paths.js';

/** The wall time of the multi-master convergence test, run as `npm test` would run that one file. */
export interface ConvergenceFigures {
  seconds: number;
  /** The runner's last line, `N passed, N failed, N skipped`, or why there is none. */
  result: string;
  ok: boolean;
  /** When it failed: the last lines of its output. */
  outputTail?: string;
}

const TIMEOUT_MS = 20 * 60_000;

export async function benchConvergence(): Promise<ConvergenceFigures> {
  const root = packageRoot();
  const started = process.hrtime.bigint();
  // No shell: the runner starts (and always stops) its own clusters.
  const child = spawn(process.execPath, [path.join('dist', 'test', 'harness', 'run-suite.js'), path.join('dist', 'test', 'convergence.test.js')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
  // SIGTERM lets the runner stop tap and its clusters; it escalates by itself.
  const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const summary = out.split('\n').reverse().find((l) => /^\d+ passed, \d+ failed/.test(l));
  const ok = code === 0 && summary !== undefined && /\b0 failed/.test(summary);
  return {
    seconds: Math.round(seconds * 10) / 10,
    result: summary ?? `no summary line (exit ${code})`,
    ok,
    ...(ok ? {} : { outputTail: out.trimEnd().split('\n').slice(-40).join('\n') }),
  };
}
