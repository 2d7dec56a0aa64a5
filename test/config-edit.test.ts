// `capra config get/set`: the edit functions over text (comments and layout
// kept, values read as YAML, dotted keys with quoted parts, every result
// validated whole, name and metadata refused), and the CLI on a real job:
// resolved values with defaults, passwords masked, a refused set leaving the
// file byte for byte, and a set the running daemon applies on `capra reload`.
import { chmod, readFile, stat } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { fileOnlyEnv, setMessage, setSetting } from '../orchestrator/src/config/edit.js';
import { formatKeyPath, parseKeyPath } from '../orchestrator/src/config/key-path.js';
import { maskPassword } from '../orchestrator/src/config/mask.js';
import { getSetting, resolvedView } from '../orchestrator/src/config/view.js';
import { parseConfigText } from '../orchestrator/src/config/load.js';
import { logfilePath, pidfilePath } from '../orchestrator/src/config/types.js';
import { CapraError } from '../orchestrator/src/util/errors.js';
import { type CliResult, type Job, cli, makeJob, waitSame } from './harness/capra.js';
import { freshDb, sql, testClusters, waitFor } from './harness/db.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const FILE = '/etc/capra/shop.yml';
const ENV: NodeJS.ProcessEnv = { HOME: '/home/capra' };

/** A config as a person writes it: comments, aligned, a blank line, flow lists, a quoted key. */
const TEXT = `# Capra job for the shop
name: shop                     # the job's name
databases:
  a: postgres://app:s3cret@10.0.0.1/shop   # the first database
  b: postgres://app@10.0.0.2/shop

syncs:
  shop:
    sources: [a]               # one source
    targets: [b]
    tables:
      include: [public]        # schemas
      keys:
        "public.events": events_uq   # no primary key
    conflict: latest           # strategy
    kick: notify
log_level: warn   # quiet
`;

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The CapraError `fn` throws (a failure when it throws nothing). */
function caught(t: Test, fn: () => unknown, what: string): string {
  try {
    fn();
  } catch (err) {
    t.type(err, CapraError, `${what}: a CapraError`);
    const msg = err instanceof Error ? err.message : String(err);
    t.notMatch(msg, /\n/, `${what}: one line`);
    return msg;
  }
  t.fail(`${what}: expected an error`);
  return '';
}

/** The lines of `after` that differ from `before`, position by position, plus any added at the end. */
function changedLines(before: string, after: string): string[] {
  const b = before.split('\n');
  return after.split('\n').filter((line, i) => line !== b[i]);
}

t.test('parseKeyPath: dots, quoted parts, [N] indexes; bad keys named', async (t) => {
  t.same(parseKeyPath('log_level'), ['log_level']);
  t.same(parseKeyPath('syncs.shop.kick'), ['syncs', 'shop', 'kick']);
  t.same(parseKeyPath('syncs.shop.tables.keys."public.events"'), ['syncs', 'shop', 'tables', 'keys', 'public.events']);
  t.same(parseKeyPath('syncs."my.sync".conflict'), ['syncs', 'my.sync', 'conflict']);
  t.same(parseKeyPath('a."q\\"uote\\\\d"'), ['a', 'q"uote\\d'], 'backslash escapes inside quotes');
  t.same(parseKeyPath('syncs.shop.sources[1]'), ['syncs', 'shop', 'sources', 1]);
  t.equal(formatKeyPath(['syncs', 'shop', 'tables', 'keys', 'public.events']), 'syncs.shop.tables.keys."public.events"');
  t.equal(formatKeyPath(['syncs', 'shop', 'sources', 1]), 'syncs.shop.sources[1]');
  for (const bad of ['', 'a..b', 'a.', '.a', 'a."b', 'a"b"', 'a[x]']) {
    const msg = caught(t, () => parseKeyPath(bad), `key ${JSON.stringify(bad)}`);
    t.ok(msg.startsWith(`bad key ${bad === '' ? '""' : bad}: `), `names the key: ${msg}`);
  }
});

t.test('set keeps comments and layout; numbers, strings, lists', async (t) => {
  const level = setSetting(TEXT, FILE, 'log_level', 'debug', ENV);
  t.same(changedLines(TEXT, level.text), ['log_level: debug   # quiet'], 'only the value changed; its comment stays');
  t.equal(setMessage('log_level', level), 'log_level = debug (was warn); run capra reload to apply');

  const rows = setSetting(level.text, FILE, 'batch_rows', '5000', ENV);
  t.equal(rows.text, `${level.text}batch_rows: 5000\n`, 'a new top-level key is one line at the end, nothing else touched');
  t.equal(rows.after.batchRows, 5000, 'a number');
  t.equal(setMessage('batch_rows', rows), 'batch_rows = 5000 (was 10000); run capra reload to apply', 'was: the default');

  const cron = setSetting(rows.text, FILE, 'syncs.shop.kick', '*/5 * * * * *', ENV);
  t.same(changedLines(rows.text, cron.text), ['    kick: "*/5 * * * * *"'], 'a cron expression: a string, no quoting needed on the command line');
  t.same(cron.after.syncs.shop!.kick, { notify: false, cron: '*/5 * * * * *' });

  const list = setSetting(cron.text, FILE, 'syncs.shop.conflict', '[b, a]', ENV);
  t.same(changedLines(cron.text, list.text), ['    conflict: [b, a]           # strategy'], 'a flow list, in place, comment kept');
  t.same(list.after.syncs.shop!.conflict.default, ['b', 'a'], 'a priority list');
  t.equal(
    setMessage('syncs.shop.conflict', list),
    'syncs.shop.conflict = {default: [b, a], tables: {}} (was {default: latest, tables: {}}); run capra reload to apply',
  );

  const quoted = setSetting(list.text, FILE, 'syncs.shop.copy_data', '"never"', ENV);
  t.equal(quoted.after.syncs.shop!.copyData, 'never', 'a quoted string');
  t.match(quoted.text, /^ {4}copy_data: never\n/m, 'a missing sync key is added inside the sync, indented like its siblings');

  const item = setSetting(quoted.text, FILE, 'syncs.shop.tables.include[1]', 'sales', ENV);
  t.same(changedLines(quoted.text, item.text), ['      include: [public, sales]        # schemas'], 'a list item by index');

  for (const comment of ['# Capra job for the shop', "# the job's name", '# the first database', '# one source', '# no primary key', '# quiet']) {
    t.ok(item.text.includes(comment), `comment kept: ${comment}`);
  }
  t.ok(item.text.includes('name: shop                     # the job'), 'alignment kept');
  t.ok(item.text.includes('\n\nsyncs:'), 'the blank line kept');
  t.same(
    parse(item.text),
    {
      name: 'shop',
      databases: { a: 'postgres://app:s3cret@10.0.0.1/shop', b: 'postgres://app@10.0.0.2/shop' },
      syncs: {
        shop: {
          sources: ['a'],
          targets: ['b'],
          tables: { include: ['public', 'sales'], keys: { 'public.events': 'events_uq' } },
          conflict: ['b', 'a'],
          kick: '*/5 * * * * *',
          copy_data: 'never',
        },
      },
      log_level: 'debug',
      batch_rows: 5000,
    },
    'the file says exactly what was set, and everything else as before',
  );

  const block = setSetting(TEXT, FILE, 'syncs.shop.tables', '{include: [public.orders]}', ENV);
  t.same(block.after.syncs.shop!.tables, { include: ['public.orders'], exclude: [], keys: {} }, 'a block map replaced by a flow map');
  t.ok(block.text.includes('# the first database'), 'comments elsewhere survive a rewrite of a block');
});

t.test('a quoted part names a map key that contains dots', async (t) => {
  const key = 'syncs.shop.tables.keys."public.events"';
  const r = setSetting(TEXT, FILE, key, 'events_key', ENV);
  t.same(r.after.syncs.shop!.tables.keys, { 'public.events': 'events_key' });
  t.same(changedLines(TEXT, r.text), ['        "public.events": events_key   # no primary key']);
  t.equal(setMessage(key, r), `${key} = events_key (was events_uq); run capra reload to apply`);

  const added = setSetting(TEXT, FILE, 'syncs.shop.tables.keys."public.audit"', 'audit_uq', ENV);
  t.same(added.after.syncs.shop!.tables.keys, { 'public.events': 'events_uq', 'public.audit': 'audit_uq' }, 'a new dotted entry');

  const map = setSetting(TEXT, FILE, 'syncs.shop.conflict', '{default: latest, tables: {}}', ENV);
  const perTable = setSetting(map.text, FILE, 'syncs.shop.conflict.tables."public.orders"', '[b, a]', ENV);
  t.same(perTable.after.syncs.shop!.conflict.tables, { 'public.orders': ['b', 'a'] }, 'a per-table conflict override');

  // Unquoted, the dots make two levels: refused, naming the key and how to quote.
  const msg = caught(t, () => setSetting(map.text, FILE, 'syncs.shop.conflict.tables.public.orders', 'skip', ENV), 'unquoted dotted table');
  t.match(msg, /: syncs\.shop\.conflict\.tables\.public: /, `names the key the validation stopped at: ${msg}`);
  t.match(msg, /quote a part of the key that holds dots/, 'and says to quote');
});

t.test('unknown keys and bad values are refused, naming the key', async (t) => {
  const cases: [key: string, value: string, named: string][] = [
    ['colour', 'blue', 'colour'],
    ['syncs.shop.colour', 'blue', 'syncs.shop.colour'],
    ['batch_rows', '-3', 'batch_rows'],
    ['batch_rows', 'lots', 'batch_rows'],
    ['poll_seconds', '"5"', 'poll_seconds'],
    ['log_level', 'chatty', 'log_level'],
    ['syncs.shop.conflict', 'newest', 'syncs.shop.conflict'],
    ['syncs.shop.conflict', '[b, zz]', 'syncs.shop.conflict[1]'],
    ['syncs.shop.kick', '61 * * * *', 'syncs.shop.kick'],
    ['syncs.shop.targets', '[c]', 'syncs.shop.targets[0]'],
    ['databases.b', 'mysql://app@10.0.0.2/shop', 'databases.b'],
  ];
  for (const [key, value, named] of cases) {
    const msg = caught(t, () => setSetting(TEXT, FILE, key, value, ENV), `${key} = ${value}`);
    t.match(msg, new RegExp(`^config ${esc(FILE)}: ${esc(named)}: `), `${key} = ${value}: names ${named}: ${msg}`);
  }
  const yamlMsg = caught(t, () => setSetting(TEXT, FILE, 'syncs.shop.conflict', '[b, a', ENV), 'an unclosed list');
  t.match(yamlMsg, /^config \/etc\/capra\/shop\.yml: syncs\.shop\.conflict: the value is not valid YAML/, yamlMsg);
  const scalarMsg = caught(t, () => setSetting(TEXT, FILE, 'syncs.shop.kick.cron', '*/5 * * * * *', ENV), 'below a single value');
  t.match(scalarMsg, /: syncs\.shop\.kick\.cron: syncs\.shop\.kick is a single value, not a map: set syncs\.shop\.kick as a whole$/, scalarMsg);
  // Environment overrides do not let a bad file value through.
  const envMsg = caught(t, () => setSetting(TEXT, FILE, 'log_level', 'chatty', { ...ENV, CAPRA_LOG_LEVEL: 'debug' }), 'with CAPRA_LOG_LEVEL set');
  t.match(envMsg, /: log_level: /, envMsg);
  t.same(Object.keys(fileOnlyEnv({ CAPRA_LOG_LEVEL: 'x', CAPRA_RUN_DIR: 'y', CAPRA_LOG_DIR: 'z', HOME: '/h' })), ['HOME']);
});

t.test('name and metadata are refused: they identify the job', async (t) => {
  for (const [key, value] of [
    ['name', 'other'],
    ['metadata', 'postgres://app@10.0.0.1/elsewhere'],
  ] as const) {
    const msg = caught(t, () => setSetting(TEXT, FILE, key, value, ENV), key);
    t.match(msg, new RegExp(`^config ${esc(FILE)}: ${key}: .*identifies the job.*install again$`), msg);
  }
  // Moving the first database to another server would move the default metadata database too.
  const moved = caught(t, () => setSetting(TEXT, FILE, 'databases.a', 'postgres://app@10.9.9.9/shop', ENV), 'databases.a elsewhere');
  t.match(moved, /: databases\.a: this would move the job's metadata database .*install again$/, moved);
  t.notOk(moved.includes('s3cret'), 'no password in the message');
  // A new password for the same database is fine, and never shown.
  const pw = setSetting(TEXT, FILE, 'databases.a', 'postgres://app:n3wpass@10.0.0.1/shop', ENV);
  t.equal(setMessage('databases.a', pw), 'databases.a = postgres://app:***@10.0.0.1/shop (was postgres://app:***@10.0.0.1/shop); run capra reload to apply');
});

t.test('get: resolved values, defaults included, passwords masked', async (t) => {
  const cfg = parseConfigText(TEXT, FILE, ENV);
  t.equal(getSetting(cfg, 'log_level'), 'warn');
  t.equal(getSetting(cfg, 'batch_rows'), 10000, 'the default batch_rows');
  t.equal(getSetting(cfg, 'poll_seconds'), 30, 'the default poll_seconds');
  t.equal(getSetting(cfg, 'syncs.shop.copy_data'), 'empty', 'the default copy_data');
  t.same(getSetting(cfg, 'syncs.shop.kick'), { notify: true, cron: null });
  t.equal(getSetting(cfg, 'syncs.shop.tables.keys."public.events"'), 'events_uq');
  t.equal(getSetting(cfg, 'syncs.shop.sources[0]'), 'a');
  t.equal(getSetting(cfg, 'databases.a'), 'postgres://app:***@10.0.0.1/shop', 'the password masked');
  t.equal(getSetting(cfg, 'metadata'), 'postgres://app:***@10.0.0.1/capra_shop', 'the default metadata URL, masked');
  t.equal(parseConfigText(TEXT.replace('log_level: warn   # quiet\n', ''), FILE, ENV).logLevel, 'info', 'control: no log_level is info');
  t.equal(getSetting(parseConfigText(TEXT.replace('log_level: warn   # quiet\n', ''), FILE, ENV), 'log_level'), 'info');
  t.notOk(JSON.stringify(resolvedView(cfg)).includes('s3cret'), 'the whole view has no password');

  t.equal(maskPassword('postgres://u:p%40ss@h:5432/db?sslmode=require'), 'postgres://u:***@h:5432/db?sslmode=require');
  t.equal(maskPassword('postgres://u@h/db?sslmode=require&password=x&application_name=y'), 'postgres://u@h/db?sslmode=require&password=***&application_name=y');
  t.equal(maskPassword('postgres://u@h/db'), 'postgres://u@h/db');

  for (const [key, named] of [
    ['colour', 'colour'],
    ['syncs.shop.colour', 'syncs.shop.colour'],
    ['syncs.nope', 'syncs.nope'],
    ['syncs.shop.kick.every', 'syncs.shop.kick.every'],
    ['log_level.x', 'log_level.x'],
  ] as const) {
    const msg = caught(t, () => getSetting(cfg, key), `get ${key}`);
    t.match(msg, new RegExp(`^config ${esc(FILE)}: ${esc(named)}: `), `get ${key}: ${msg}`);
  }
});

t.test('the resolved view is itself a valid config that resolves to the same config', async (t) => {
  const cfg = parseConfigText(TEXT, FILE, ENV);
  const again = parseConfigText(JSON.stringify(resolvedView(cfg, false)), FILE, ENV);
  const { metadataIsDefault: _a, ...x } = cfg;
  const { metadataIsDefault: _b, ...y } = again;
  t.same(y, x);
});

// ---- the CLI, on a real job ----

const PASSWORD = 'pw_config_edit';
const schema = 'CREATE TABLE items (id int PRIMARY KEY, name text);';

/** A job over fresh databases whose URLs carry a password (the test clusters trust local connections). */
async function jobWithPassword(t: Test): Promise<Job> {
  const urls: Record<string, string> = {};
  for (const [db, cluster] of [
    ['a', c1!],
    ['b', c2!],
  ] as const) {
    const u = new URL(await freshDb(t, cluster, db));
    await sql(u.toString(), schema);
    u.password = PASSWORD;
    urls[db] = u.toString();
  }
  return makeJob(t, {
    nodes: urls,
    yaml: '# replication of items\nsyncs:\n  s:\n    sources: [a]   # the writer\n    targets: [b]\n    tables: { include: [public.items] }',
  });
}

async function capra(job: Job, ...args: string[]): Promise<CliResult> {
  return cli(['--config', job.configPath, ...args]);
}

function noPassword(t: Test, r: CliResult, what: string): void {
  t.notOk(r.stdout.includes(PASSWORD) || r.stderr.includes(PASSWORD), `${what}: the password appears nowhere`);
}

t.test('CLI: config get and set on a job', async (t) => {
  const job = await jobWithPassword(t);
  const original = await readFile(job.configPath, 'utf8');
  t.ok(original.includes(`:${PASSWORD}@`), 'control: the config file has the password');

  const level = await capra(job, 'config', 'get', 'log_level');
  t.same(level, { code: 0, stdout: 'info\n', stderr: '' }, 'config get log_level: info, the default');
  const rows = await capra(job, 'config', 'get', 'batch_rows');
  t.same(rows, { code: 0, stdout: '10000\n', stderr: '' }, 'config get batch_rows: 10000, the default');

  await chmod(job.configPath, 0o640);
  const { mode } = await stat(job.configPath);
  const set = await capra(job, 'config', 'set', 'log_level', 'debug');
  t.same(set, { code: 0, stdout: 'log_level = debug (was info); run capra reload to apply\n', stderr: '' }, 'config set log_level debug');
  const changed = await readFile(job.configPath, 'utf8');
  t.equal(changed, `${original}\nlog_level: debug\n`, 'the file gained exactly that line');
  t.equal((await stat(job.configPath)).mode, mode, 'the file keeps its mode');
  const level2 = await capra(job, 'config', 'get', 'log_level');
  t.same(level2, { code: 0, stdout: 'debug\n', stderr: '' }, 'config get log_level: debug');

  const bad = await capra(job, 'config', 'set', 'batch_rows', '-3');
  t.not(bad.code, 0, 'config set batch_rows -3 fails');
  t.match(bad.stderr, /^capra: [^\n]*\bbatch_rows\b[^\n]*\n$/, `one line naming batch_rows: ${bad.stderr}`);
  t.equal(bad.stdout, '', 'nothing on stdout');
  t.equal(await readFile(job.configPath, 'utf8'), changed, 'the file is byte for byte as before');

  const name = await capra(job, 'config', 'set', 'name', 'other');
  t.not(name.code, 0, 'config set name fails');
  t.match(name.stderr, /^capra: [^\n]*: name: [^\n]*install again\n$/, `one line: ${name.stderr}`);
  t.equal(await readFile(job.configPath, 'utf8'), changed, 'the file is untouched');

  const unknown = await capra(job, 'config', 'get', 'colour');
  t.not(unknown.code, 0, 'config get of an unknown key fails');
  t.match(unknown.stderr, /^capra: [^\n]*: colour: unknown key[^\n]*\n$/, `one line naming it: ${unknown.stderr}`);

  const db = await capra(job, 'config', 'get', 'databases.a');
  t.equal(db.code, 0, `config get databases.a exits 0 ${db.stderr}`);
  t.equal(db.stdout, `${job.urls.a!.replace(`:${PASSWORD}@`, ':***@')}\n`, 'the URL with *** for the password');
  noPassword(t, db, 'config get databases.a');

  const all = await capra(job, 'config', 'get');
  t.equal(all.code, 0, `config get exits 0 ${all.stderr}`);
  noPassword(t, all, 'config get');
  const view = parse(all.stdout) as Record<string, unknown>;
  t.equal(view.log_level, 'debug');
  t.equal(view.batch_rows, 10000);
  t.equal(view.name, job.name);
  t.match(view.metadata, /:\*\*\*@/, 'the metadata URL masked too');

  const json = await capra(job, 'config', 'get', 'syncs.s.kick', '--json');
  t.same(JSON.parse(json.stdout), { notify: true, cron: null }, 'config get --json');
});

/** The daemon is stopped when the test ends, pass or fail: SIGTERM, then SIGKILL. */
function stopDaemonAtEnd(t: Test, job: Job): void {
  t.teardown(async () => {
    const pid = Number.parseInt(await readFile(pidfilePath(job.cfg), 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(pid)) return;
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    if (!alive()) return;
    process.kill(pid, 'SIGTERM');
    try {
      await waitFor(async () => !alive(), { what: `pid ${pid} to stop`, timeoutMs: 20_000, intervalMs: 100 });
    } catch {
      if (alive()) process.kill(pid, 'SIGKILL');
    }
  });
}

interface LogRecord {
  level: number;
  msg: string;
  time: number;
}

async function logRecords(job: Job): Promise<LogRecord[]> {
  const text = await readFile(logfilePath(job.cfg), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogRecord);
}

t.test('CLI: the running daemon applies a config set on reload', async (t) => {
  const job = await jobWithPassword(t);
  stopDaemonAtEnd(t, job);
  for (const cmd of ['install', 'add-triggers', 'start']) {
    const r = await capra(job, cmd);
    t.equal(r.code, 0, `${cmd} exits 0 ${r.stderr}`);
  }
  await sql(job.urls.a!, `INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 10) g`);
  await waitSame(job, 'items', ['a', 'b'], { orderBy: 'id' });
  // Applied deltas are now waiting for the daemon's purge, which logs at debug level.
  await waitFor(async () => (await logRecords(job)).some((r) => r.msg === 'lanes started'), { what: 'the daemon to run its lanes' });
  t.notOk(
    (await logRecords(job)).some((r) => r.level === 20),
    'control: no debug line at the default level info',
  );

  const set = await capra(job, 'config', 'set', 'log_level', 'debug');
  t.equal(set.stdout, 'log_level = debug (was info); run capra reload to apply\n', `config set ${set.stderr}`);
  const reload = await capra(job, 'reload');
  t.equal(reload.code, 0, `reload exits 0 ${reload.stderr}`);
  await waitFor(async () => (await logRecords(job)).some((r) => r.msg === 'config reloaded'), { what: 'the daemon to log the reload' });
  // The purge runs once a minute: the first debug line comes within about a minute of the reload.
  await waitFor(async () => (await logRecords(job)).some((r) => r.level === 20), { what: 'a debug line in the log', timeoutMs: 150_000, intervalMs: 500 });
  const records = await logRecords(job);
  const reloadedAt = records.findIndex((r) => r.msg === 'config reloaded');
  const debugAt = records.findIndex((r) => r.level === 20);
  t.ok(debugAt > reloadedAt, `the debug line (${records[debugAt]?.msg}) comes after the reload`);
  t.notOk((await readFile(logfilePath(job.cfg), 'utf8')).includes(PASSWORD), 'the log has no password');
});
