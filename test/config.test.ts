// Config validation and the CLI's error contract: every bad value is rejected
// with a message naming its key path; the CLI fails with exactly one line
// "capra: ..." (a stack only with --verbose); passwords never reach the output.
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { CapraError } from '../orchestrator/src/util/errors.js';
import { type CliResult, cli, makeJob } from './harness/capra.js';
import { sql, testClusters, urlFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1] = clusters;

type Raw = Record<string, unknown>;

/** A valid config; every case below changes one thing in it. */
function base(): Raw {
  return {
    name: 'shop',
    databases: {
      a: 'postgres://app@127.0.0.1:5432/shop',
      b: 'postgres://app@127.0.0.1:5433/shop',
    },
    syncs: { shop: { sources: ['a'], targets: ['b'] } },
  };
}

const sync = (raw: Raw): Raw => (raw.syncs as Record<string, Raw>).shop!;

interface BadCase {
  what: string;
  change: (raw: Raw) => void;
  /** The key path the message must name. */
  key: string;
}

const bad: BadCase[] = [
  { what: 'an unknown top-level key', change: (r) => Object.assign(r, { colour: 'blue' }), key: 'colour' },
  { what: 'an unknown key inside a sync', change: (r) => Object.assign(sync(r), { colour: 'blue' }), key: 'syncs.shop.colour' },
  { what: 'a misspelt sync key', change: (r) => Object.assign(sync(r), { copydata: 'never' }), key: 'syncs.shop.copydata' },
  { what: 'a bad conflict strategy', change: (r) => Object.assign(sync(r), { conflict: 'newest' }), key: 'syncs.shop.conflict' },
  { what: 'a priority list naming an unknown database', change: (r) => Object.assign(sync(r), { conflict: ['b', 'zz'] }), key: 'syncs.shop.conflict[1]' },
  { what: 'a bare handler naming no code', change: (r) => Object.assign(sync(r), { conflict: 'handler' }), key: 'syncs.shop.conflict' },
  {
    what: 'a handler that is neither sql: nor a module',
    change: (r) => Object.assign(sync(r), { conflict: { handler: 'merge_rows' } }),
    key: 'syncs.shop.conflict.handler',
  },
  {
    what: 'an sql: handler without a schema',
    change: (r) => Object.assign(sync(r), { conflict: { handler: 'sql:merge_rows' } }),
    key: 'syncs.shop.conflict.handler',
  },
  {
    what: 'an exception handler that is not a string',
    change: (r) => Object.assign(sync(r), { exception_handlers: [42] }),
    key: 'syncs.shop.exception_handlers[0]',
  },
  {
    what: 'a bad per-table conflict override',
    change: (r) => Object.assign(sync(r), { conflict: { default: 'latest', tables: { 'public.orders': 'bogus' } } }),
    key: 'syncs.shop.conflict.tables.public.orders',
  },
  { what: 'a bad copy_data', change: (r) => Object.assign(sync(r), { copy_data: 'sometimes' }), key: 'syncs.shop.copy_data' },
  { what: 'a copy_data that is not a string', change: (r) => Object.assign(sync(r), { copy_data: true }), key: 'syncs.shop.copy_data' },
  { what: 'a bad cron expression in kick', change: (r) => Object.assign(sync(r), { kick: '61 * * * *' }), key: 'syncs.shop.kick' },
  { what: 'a kick cron with too few fields', change: (r) => Object.assign(sync(r), { kick: '*/5 * * *' }), key: 'syncs.shop.kick' },
  { what: 'a bad cron in the kick map', change: (r) => Object.assign(sync(r), { kick: { notify: true, cron: 'every minute' } }), key: 'syncs.shop.kick.cron' },
  { what: 'a sync target naming an unknown database', change: (r) => Object.assign(sync(r), { targets: ['c'] }), key: 'syncs.shop.targets[0]' },
  { what: 'a sync source naming an unknown database', change: (r) => Object.assign(sync(r), { sources: ['zz'] }), key: 'syncs.shop.sources[0]' },
  { what: 'a job name with uppercase and a dash', change: (r) => Object.assign(r, { name: 'Shop-1' }), key: 'name' },
  { what: 'a job name with a space', change: (r) => Object.assign(r, { name: 'my shop' }), key: 'name' },
  { what: 'a non-postgres database URL', change: (r) => Object.assign(r.databases as Raw, { a: 'mysql://app@127.0.0.1/shop' }), key: 'databases.a' },
  { what: 'a database URL that is no URL', change: (r) => Object.assign(r.databases as Raw, { b: 'host=127.0.0.1 dbname=shop' }), key: 'databases.b' },
  { what: 'a non-postgres metadata URL', change: (r) => Object.assign(r, { metadata: 'http://127.0.0.1/capra_shop' }), key: 'metadata' },
  {
    what: 'a database group naming an unknown database',
    change: (r) => Object.assign(r, { groups: { databases: { hq: ['a', 'zz'] } } }),
    key: 'groups.databases.hq[1]',
  },
  { what: 'an empty table group', change: (r) => Object.assign(r, { groups: { tables: { g: [] } } }), key: 'groups.tables.g' },
  {
    what: 'a table group with a bad table name',
    change: (r) => Object.assign(r, { groups: { tables: { g: ['public.a', 'x.y.z'] } } }),
    key: 'groups.tables.g[1]',
  },
  { what: 'a sync source naming an unknown database group', change: (r) => Object.assign(sync(r), { sources: ['@hq'] }), key: 'syncs.shop.sources[0]' },
  {
    what: 'a sync include naming an unknown table group',
    change: (r) => Object.assign(sync(r), { tables: { include: ['public', '@g'] } }),
    key: 'syncs.shop.tables.include[1]',
  },
];

function configText(c: BadCase): string {
  const raw = base();
  c.change(raw);
  return stringify(raw);
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The message names the key as "<file>: <key>: ...", the form every config error uses. */
const namesKey = (key: string): RegExp => new RegExp(`: ${esc(key)}: `);

/** Exactly one line on stderr, "capra: ...", no stack, non-zero exit. */
function oneLineError(t: Test, r: CliResult, what: string): string {
  t.not(r.code, 0, `${what}: non-zero exit`);
  t.match(r.stderr, /^capra: [^\n]+\n$/, `${what}: stderr is exactly one line starting with "capra:"`);
  t.notMatch(r.stderr, /^ {4}at /m, `${what}: no stack trace`);
  return r.stderr.trimEnd();
}

/** With --verbose, debug log lines may come first: the error is the one line starting "capra: ". */
function errorLine(t: Test, r: CliResult, what: string): string {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('capra: '));
  t.equal(lines.length, 1, `${what}: exactly one "capra:" error line`);
  return lines[0] ?? '';
}

let tmp = '';
t.before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'capra-config-test-'));
});
t.teardown(() => rm(tmp, { recursive: true, force: true }));

t.test('parseConfigText accepts the base config (control)', async (t) => {
  const cfg = parseConfigText(stringify(base()), 'capra.yml', {});
  t.equal(cfg.name, 'shop');
  t.same(cfg.syncs.shop!.sources, ['a']);
  t.equal(cfg.syncs.shop!.copyData, 'empty', 'copy_data defaults to empty');
  const raw = base();
  Object.assign(sync(raw), { conflict: ['b', 'a'], copy_data: 'never', kick: '*/5 * * * * *', cascade: true });
  const ok = parseConfigText(stringify(raw), 'capra.yml', {}).syncs.shop!;
  t.same(ok.conflict.default, ['b', 'a'], 'a priority list of known databases is accepted');
  t.same(ok.kick, { notify: false, cron: '*/5 * * * * *' }, 'a valid cron kick is accepted');

  Object.assign(sync(raw), {
    conflict: { default: { handler: 'sql:app.merge' }, tables: { 'public.orders': { handler: './merge.mjs' } } },
    exception_handlers: ['sql:app.fix', '/opt/h/fix.js'],
  });
  const handlers = parseConfigText(stringify(raw), '/etc/capra/capra.yml', {}).syncs.shop!;
  t.same(
    handlers.conflict,
    { default: { handler: { sql: 'app.merge' } }, tables: { 'public.orders': { handler: { module: '/etc/capra/merge.mjs' } } } },
    'handlers: sql:schema.function, and a module path relative to the config file',
  );
  t.same(handlers.exceptionHandlers, [{ sql: 'app.fix' }, { module: '/opt/h/fix.js' }]);
});

t.test('parseConfigText rejects each bad value naming its key path', async (t) => {
  for (const c of bad) {
    let caught: unknown;
    try {
      parseConfigText(configText(c), '/etc/capra/shop.yml', {});
    } catch (err) {
      caught = err;
    }
    t.type(caught, CapraError, `${c.what}: rejected with a CapraError`);
    const msg = caught instanceof Error ? caught.message : '';
    t.match(msg, namesKey(c.key), `${c.what}: the message names ${c.key}`);
    t.match(msg, /\/etc\/capra\/shop\.yml/, `${c.what}: the message names the file`);
    t.notMatch(msg, /\n/, `${c.what}: the message is one line`);
  }
});

t.test('with several mistakes, the first in the documented order of keys is reported', async (t) => {
  const cases: { what: string; change: (raw: Raw) => void; message: string }[] = [
    {
      what: 'an unknown key comes before any other problem in its map',
      change: (r) => {
        r.name = 'Bad-Name';
        r.colour = 'blue';
      },
      message:
        'colour: unknown key (expected one of: name, metadata, databases, groups, syncs, run_dir, log_dir, log_level, batch_rows, poll_seconds, node_timeout_seconds)',
    },
    {
      what: "an unknown key inside a sync comes before that sync's bad values",
      change: (r) => Object.assign(sync(r), { copy_data: 'sometimes', colour: 'blue' }),
      message:
        'syncs.shop.colour: unknown key (expected one of: sources, targets, tables, conflict, copy_data, copy_indexes, kick, cascade, exception_handlers, compare)',
    },
    {
      what: 'metadata comes before databases',
      change: (r) => {
        r.metadata = 'http://h/m';
        (r.databases as Raw).b = 'mysql://h/shop';
      },
      message: 'metadata: expected a postgres:// URL, got scheme http:',
    },
    {
      what: "a sync's databases are checked before its later keys",
      change: (r) => Object.assign(sync(r), { sources: [], copy_data: 'sometimes' }),
      message: 'syncs.shop.sources: a sync needs at least one source',
    },
    {
      what: 'a list naming an unknown database and repeating one: its first item',
      change: (r) => Object.assign(sync(r), { sources: ['a'], targets: ['a', 'zz'] }),
      message: 'syncs.shop.targets[0]: database a is listed twice',
    },
    {
      what: "a sync's tables come before its copy_data",
      change: (r) => Object.assign(sync(r), { copy_data: 'sometimes', tables: { include: 'public' } }),
      message: 'syncs.shop.tables.include: expected a list, got "public"',
    },
  ];
  for (const c of cases) {
    const raw = base();
    c.change(raw);
    t.throws(() => parseConfigText(stringify(raw), '/etc/capra/shop.yml', {}), { message: `config /etc/capra/shop.yml: ${c.message}` }, c.what);
  }
});

t.test('an empty value is an unset one where the old reader took it so, and refused elsewhere', async (t) => {
  const raw = base();
  Object.assign(sync(raw), { targets: ['b'], tables: null, exception_handlers: null });
  raw.log_level = null;
  const cfg = parseConfigText(stringify(raw), 'capra.yml', {});
  t.same(cfg.syncs.shop!.tables, { include: [], exclude: [], keys: {} }, 'tables: with no value is every table');
  t.same(cfg.syncs.shop!.exceptionHandlers, [], 'a list with no value is empty');
  t.equal(cfg.logLevel, 'info', 'log_level: with no value is the default');
  for (const key of ['batch_rows', 'run_dir', 'metadata'] as const) {
    const bad = base();
    bad[key] = null;
    t.throws(
      () => parseConfigText(stringify(bad), 'capra.yml', {}),
      { message: new RegExp(`^config capra\\.yml: ${key}: expected .*, got null$`) },
      `${key}: with no value is refused`,
    );
  }
});

t.test('invalid YAML is one line naming the file', async (t) => {
  t.throws(() => parseConfigText('name: [unclosed\n  : :', '/x/broken.yml', {}), /config \/x\/broken\.yml: not valid YAML/);
});

t.test('the CLI reports each bad config in one line naming the key path', async (t) => {
  // A few CLI processes at a time: each one is a full node start.
  const results: { c: BadCase; file: string; plain: CliResult; verbose: CliResult | null }[] = [];
  for (let i = 0; i < bad.length; i += 4) {
    results.push(
      ...(await Promise.all(
        bad.slice(i, i + 4).map(async (c, j) => {
          const n = i + j;
          const file = path.join(tmp, `bad-${n}.yml`);
          await writeFile(file, configText(c));
          const plain = await cli(['--config', file, n % 2 ? 'install' : 'status']);
          // --verbose for every third case: the same message, then a stack.
          const verbose = n % 3 === 0 ? await cli(['--config', file, '--verbose', 'status']) : null;
          return { c, file, plain, verbose };
        }),
      )),
    );
  }
  for (const { c, file, plain, verbose } of results) {
    const line = oneLineError(t, plain, c.what);
    t.match(line, namesKey(c.key), `${c.what}: names ${c.key}`);
    t.ok(line.includes(file), `${c.what}: names the file`);
    t.equal(plain.stdout, '', `${c.what}: nothing on stdout`);
    if (!verbose) continue;
    t.not(verbose.code, 0, `${c.what} --verbose: non-zero exit`);
    t.equal(verbose.stderr.split('\n')[0], line, `${c.what} --verbose: the same message first`);
    t.match(verbose.stderr, /^ {4}at /m, `${c.what} --verbose: a stack trace follows`);
  }
});

t.test('a missing config file is a one-line error naming the file', async (t) => {
  const file = path.join(tmp, 'no-such-dir', 'capra-missing.yml');
  for (const cmd of ['status', 'install', 'start']) {
    const line = oneLineError(t, await cli(['--config', file, cmd]), `missing file (${cmd})`);
    t.ok(line.includes('capra-missing.yml'), `${cmd}: names the file: ${line}`);
  }
});

t.test('an unknown command or option is a one-line error', async (t) => {
  const cmd = oneLineError(t, await cli(['frobnicate']), 'unknown command');
  t.match(cmd, /frobnicate/, 'names the command');
  const cmd2 = oneLineError(t, await cli(['--config', path.join(tmp, 'whatever.yml'), 'frobnicate']), 'unknown command with --config');
  t.match(cmd2, /unknown command frobnicate/, 'the command is checked, not the missing file');
  const opt = oneLineError(t, await cli(['--frobnicate', 'status']), 'unknown option');
  t.match(opt, /--frobnicate/, 'names the option');
});

/** A local TCP port nothing listens on: bound once to get a free one, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const PASSWORD = 's3cretpw';

/** `capra install` (plain and --verbose) fails naming the database warehouse, never showing its password. */
async function installFailsNamingWarehouse(t: Test, file: string): Promise<void> {
  for (const verbose of [false, true]) {
    const r = await cli(['--config', file, ...(verbose ? ['--verbose'] : []), 'install']);
    const label = `install${verbose ? ' --verbose' : ''}`;
    t.not(r.code, 0, `${label}: fails`);
    const first = errorLine(t, r, label);
    t.match(first, /\bwarehouse\b/, `${label}: names the database warehouse: ${first}`);
    if (!verbose) oneLineError(t, r, label);
    t.notOk(r.stdout.includes(PASSWORD) || r.stderr.includes(PASSWORD), `${label}: the password appears nowhere`);
  }
}

t.test('an unreachable database is named by its config name, and its password never shown', async (t) => {
  const port = await closedPort();
  const unreachable = `postgres://app:${PASSWORD}@127.0.0.1:${port}/shop`;
  const job = await makeJob(t, {
    nodes: { a: c1!, warehouse: unreachable },
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [warehouse]',
  });
  await installFailsNamingWarehouse(t, job.configPath);
  // status reports it too, without the password.
  const st = await cli(['--config', job.configPath, 'status']);
  t.not(st.code, 0, 'status: unhealthy');
  t.match(st.stdout + st.stderr, /\bwarehouse\b/, 'status names warehouse');
  t.notOk(st.stdout.includes(PASSWORD) || st.stderr.includes(PASSWORD), 'status: the password appears nowhere');
  const js = await cli(['--config', job.configPath, 'status', '--json']);
  t.notOk(js.stdout.includes(PASSWORD) || js.stderr.includes(PASSWORD), 'status --json: the password appears nowhere');
});

t.test('an unreachable first database (home of the default metadata database) is named too', async (t) => {
  const port = await closedPort();
  const name = `jcfg${process.pid}`;
  const reachable = urlFor(c1!, 'postgres');
  const file = path.join(tmp, 'first-unreachable.yml');
  await writeFile(
    file,
    stringify({
      name,
      databases: { warehouse: `postgres://app:${PASSWORD}@127.0.0.1:${port}/shop`, a: reachable },
      syncs: { s: { sources: ['a'], targets: ['warehouse'] } },
      run_dir: tmp,
      log_dir: tmp,
    }),
  );
  await installFailsNamingWarehouse(t, file);
  // Nothing was created on the reachable server.
  const dbs = await sql(urlFor(c1!, 'postgres'), 'SELECT datname FROM pg_database WHERE datname = $1', [`capra_${name}`]);
  t.same(dbs, [], 'no metadata database appeared anywhere reachable');
});

t.test('a non-postgres URL with a password does not echo it', async (t) => {
  const raw = base();
  (raw.databases as Raw).a = `mysql://app:${PASSWORD}@127.0.0.1/shop`;
  const file = path.join(tmp, 'mysql.yml');
  await writeFile(file, stringify(raw));
  const line = oneLineError(t, await cli(['--config', file, 'status']), 'mysql URL');
  t.match(line, namesKey('databases.a'));
  t.notOk(line.includes(PASSWORD), 'the password is not echoed');
});
