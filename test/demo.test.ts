// `capra demo` through the real CLI: two embedded servers syncing both ways,
// a conflict settled by `latest` and read back from repl.conflict, identical
// contents at the end; its temporary directory and servers are gone
// afterwards, also when it is interrupted with Ctrl-C.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { packageRoot } from '../orchestrator/src/util/paths.js';
import { cli } from './harness/capra.js';

// The whole output, with only what varies run to run (ports, versions, times) replaced.
const EXPECTED = `starting two embedded PostgreSQL servers (a and b)...
  a: PostgreSQL N on port P; b: PostgreSQL N on port P
capra install; capra add-triggers; capra start (in this process)...
  sync shop: sources [a, b] (multi-master), conflict: latest
a: insert items 1-3 in one transaction
   b has it N ms later
a: update item 2: price 4.50 -> 5.00
   b has it N ms later
b: insert item 4: gizmo at 7.00
   a has it N ms later
b: delete item 3
   a has it N ms later
b: change the key of item 4 to 40
   a has it N ms later
a conflict on purpose: capra stop, then item 1's price changed on both servers
a: update item 1: price 9.99 -> 12.00
b: update item 1: price 9.99 -> 15.00 (later)
capra start: a and b agree N ms later
conflict on public.items {"id":1}: a had (1, widget, 12.00), b had (1, widget, 15.00); latest -> b wins
   a has (1, widget, 15.00); b has (1, widget, 15.00)
a and b now hold:
   1  widget  15.00
   2  gadget  5.00
   40  gizmo  7.00
a and b hold identical contents: 3 rows, md5 a01151e99f305daa40e05fb1c5328603 on both.
Demo took N s.
`;

function normalize(out: string): string {
  return out
    .replace(/PostgreSQL \d+ on port \d+/g, 'PostgreSQL N on port P')
    .replace(/\d+ ms later/g, 'N ms later')
    .replace(/took \d+\.\d s/, 'took N s');
}

function ports(out: string): number[] {
  return [...out.matchAll(/on port (\d+)/g)].map((m) => Number(m[1]));
}

/** The server on `port` no longer accepts connections. */
async function refused(port: number): Promise<boolean> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2_000 });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.end();
    return false;
  } catch {
    return true;
  }
}

/** A TMPDIR of the test's own, so it can tell that the demo left nothing behind. */
async function ownTmp(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'capra-demo-test-'));
  // Like /tmp: as root the servers run as nobody, who must reach the demo's directory inside.
  await chmod(dir, 0o1777);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('capra demo: writes both ways, a conflict settled by latest, identical servers', async (t) => {
  const tmp = await ownTmp(t);
  const r = await cli(['demo'], { env: { TMPDIR: tmp }, timeoutMs: 240_000 });
  t.equal(r.code, 0, `exit status 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  t.equal(normalize(r.stdout), EXPECTED, 'the output, line by line');
  t.same(await readdir(tmp), [], 'the temporary directory is gone');
  const p = ports(r.stdout);
  t.equal(p.length, 2, 'two servers were started');
  for (const port of p) t.ok(await refused(port), `the server on port ${port} is stopped`);
});

t.test('capra demo: Ctrl-C stops the servers and removes the temporary directory', async (t) => {
  const tmp = await ownTmp(t);
  const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'capra.js'), 'demo'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: tmp },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Interrupt once the sync is running; a test that fails before that must
  // not leave the demo's servers behind, so it is interrupted the same way.
  t.teardown(() => void child.kill('SIGINT'));
  const deadline = Date.now() + 120_000;
  while (!out.includes('b has it') && child.exitCode === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.match(out, /b has it \d+ ms later/, 'the demo got as far as a first write arriving');
  child.kill('SIGINT');
  const code = await exit;
  t.equal(code, 1, 'exit status 1');
  t.match(err, /^capra: interrupted: stopping the servers and removing the temporary directory/m, 'says what it is doing');
  t.match(err, /^capra: demo interrupted; its servers were stopped and its temporary directory removed$/m, 'ends with one line saying so');
  t.notMatch(out, /identical/, 'it did not run on');
  t.same(await readdir(tmp), [], 'the temporary directory is gone');
  for (const port of ports(out)) t.ok(await refused(port), `the server on port ${port} is stopped`);
});
