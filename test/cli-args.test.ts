// Per-command options: each command accepts its own options and the global
// ones (anywhere on the line), and refuses any other, a missing value or a bad
// one with exactly one line "capra: ..." naming the option (and the command),
// exit 2. No database: the refusals come before the config is read.
import t, { type Test } from 'tap';
import { parseArgs } from '../orchestrator/src/cli/args.js';
import { type Args, COMMANDS, type CommandName } from '../orchestrator/src/cli/options.js';
import { commandUsage, usage } from '../orchestrator/src/cli/usage.js';
import { CapraError } from '../orchestrator/src/util/errors.js';
import { type CliResult, cli } from './harness/capra.js';

const parse = (...argv: string[]): Args => parseArgs(argv, {});

/** A usage error: exit 2, nothing on stdout, one line on stderr; returns it. */
function refused(t: Test, r: CliResult, what: string): string {
  t.equal(r.code, 2, `${what}: exit 2`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
  t.match(r.stderr, /^capra: [^\n]+\n$/, `${what}: exactly one line on stderr: ${r.stderr}`);
  return r.stderr.trimEnd();
}

t.test('capra stop --only-empty is refused in one line naming the option and the command', async (t) => {
  const line = refused(t, await cli(['--config', 'no-such-file.yml', 'stop', '--only-empty']), 'stop --only-empty');
  t.equal(line, 'capra: unknown option --only-empty for stop (see capra stop --help)');
});

t.test('an option of another command, or of none, is refused by other commands too', async (t) => {
  const cases = [
    [['install', '--sync', 's'], '--sync', 'install'],
    [['status', '--frobnicate'], '--frobnicate', 'status'],
    [['conflicts', '--wait'], '--wait', 'conflicts'],
    [['--foreground', 'restart'], '--foreground', 'restart'],
  ] as const;
  const results = await Promise.all(cases.map(async (c) => [c, await cli(['--config', 'no-such-file.yml', ...c[0]])] as const));
  for (const [[args, flag, command], r] of results) {
    const line = refused(t, r, args.join(' '));
    t.ok(line.includes(flag) && line.includes(command), `${args.join(' ')}: names ${flag} and ${command}: ${line}`);
  }
});

t.test('a missing or bad value, a value for a flag, an extra word: one line each, exit 2', async (t) => {
  const cases = [
    [['conflicts', '--sync'], /^capra: option --sync needs a value \(capra conflicts --sync NAME\)$/],
    [['status', '--json=yes'], /^capra: option --json takes no value \(capra status --json\)$/],
    [['start', '--metrics-port', 'http'], /^capra: option --metrics-port: expected a port number, got "http"$/],
    [['conflicts', '--limit', '0'], /^capra: option --limit: expected a positive whole number, got "0"$/],
    [['status', '--max-lag', 'soon'], /^capra: option --max-lag: expected a number of seconds, got "soon"$/],
    [['clone', '--watch', '-1'], /^capra: option --watch: expected a clone id, got "-1"$/],
    [['clone', '--drop-indexes-above', 'lots'], /^capra: option --drop-indexes-above: expected a size such as 100MB, 1GB, 8kB or 0, got "lots"$/],
    [['stop', 'now'], /^capra: unexpected argument now for stop \(see capra stop --help\)$/],
    [['help', 'frobnicate'], /^capra: unknown command frobnicate/],
    [['--config'], /^capra: option --config needs a value/],
  ] as [string[], RegExp][];
  const results = await Promise.all(cases.map(async (c) => [c, await cli(c[0])] as const));
  for (const [[args, re], r] of results) t.match(refused(t, r, args.join(' ')), re);
});

t.test("each command's own options are accepted", async (t) => {
  const base = parse('status');
  const cases: [string[], Partial<Args>][] = [
    [['install'], { command: 'install' }],
    [['uninstall', '-v'], { command: 'uninstall', verbose: true }],
    [['add-triggers', '--sync', 'a', '--sync=b'], { command: 'add-triggers', syncs: ['a', 'b'] }],
    [['drop-triggers', '--sync', 'a'], { command: 'drop-triggers', syncs: ['a'] }],
    [['start', '--foreground', '--metrics-port', '9187'], { command: 'start', foreground: true, metricsPort: 9187 }],
    [['stop', '--config', 'x.yml'], { command: 'stop', config: 'x.yml' }],
    [['restart', '--metrics-port=0'], { command: 'restart', metricsPort: 0 }],
    [['reload'], { command: 'reload' }],
    [['kick', '--sync', 's', '--wait', '--json'], { command: 'kick', syncs: ['s'], kickWait: 60, json: true }],
    [['kick', '--wait', '5'], { command: 'kick', kickWait: 5 }],
    [['pause', '--sync', 's'], { command: 'pause', syncs: ['s'] }],
    [['resume', '--sync', 's'], { command: 'resume', syncs: ['s'] }],
    [['status', '--json', '--max-lag', '2.5'], { command: 'status', json: true, maxLag: 2.5 }],
    [['config', 'get', 'syncs.s.kick', '--json'], { command: 'config', json: true, operands: ['get', 'syncs.s.kick'] }],
    [['conflicts', '--sync', 's', '--limit', '5', '--json'], { command: 'conflicts', syncs: ['s'], limit: 5, json: true }],
    [['demo'], { command: 'demo' }],
    [['validate', '--sync', 's', '--fix', '--json'], { command: 'validate', syncs: ['s'], fix: true, json: true }],
    [['help', 'clone'], { command: 'clone', help: true }],
    [
      ['compare', '--sync', 's', '--tables', 'x,y', '--tables', 'z', '--nodes', 'a,b', '--json'],
      { command: 'compare', syncs: ['s'], compareTables: ['x', 'y', 'z'], compareNodes: ['a', 'b'], json: true },
    ],
    [['repair', '--sync', 's', '--tables', 'x', '--dry-run', '--json'], { command: 'repair', syncs: ['s'], compareTables: ['x'], dryRun: true, json: true }],
    [['clone', '--cancel', '7'], { command: 'clone', clone: { ...base.clone, cancel: 7 } }],
    [['clone', '--watch', '8'], { command: 'clone', clone: { ...base.clone, watch: 8 } }],
    [['clone', '--list'], { command: 'clone', clone: { ...base.clone, list: true } }],
    [['clone', '--relgroup', 'g', '--dbgroup', 'h'], { command: 'clone', clone: { ...base.clone, relgroup: 'g', dbgroup: 'h' } }],
    [['clone', '--drop-indexes-above', '100MB'], { command: 'clone', clone: { ...base.clone, dropIndexes: true, dropIndexesAbove: '100MB' } }],
    [
      [
        'clone',
        '--sync',
        's',
        '--tables',
        'x,"odd,name"',
        '--tables',
        'y',
        '--dbs',
        'a:source,b:target',
        '--start',
        '1 day',
        '--only-empty',
        '--drop-indexes',
        '--wait',
      ],
      {
        command: 'clone',
        syncs: ['s'],
        clone: { onlyEmpty: true, dropIndexes: true, wait: true, list: false, tables: ['x', '"odd,name"', 'y'], dbs: 'a:source,b:target', start: '1 day' },
      },
    ],
  ];
  const seen = new Set<string>();
  for (const [argv, want] of cases) {
    const got = parse(...argv);
    t.same(got, { ...base, ...want }, argv.join(' '));
    for (const word of argv) if (word.startsWith('--')) seen.add(`${got.command} ${word.split('=')[0]}`);
  }
  // The cases above give every option of every command at least once.
  for (const [name, spec] of Object.entries(COMMANDS)) {
    for (const opt of Object.keys(spec.options)) t.ok(seen.has(`${name} --${opt}`), `a case gives ${name} --${opt}`);
  }
});

t.test('global options anywhere; the VALUE of config set as it is', async (t) => {
  t.match(parse('-c', 'x.yml', '--verbose', 'status'), { command: 'status', config: 'x.yml', verbose: true });
  t.match(parse('status', '--config=x.yml', '-v'), { command: 'status', config: 'x.yml', verbose: true });
  t.match(parse('--json', 'status'), { command: 'status', json: true }, "a command's own option before it");
  t.equal(parseArgs(['status'], { CAPRA_CONFIG: 'env.yml' }).config, 'env.yml', '$CAPRA_CONFIG is the default');
  t.same(parse('config', 'set', 'batch_rows', '-3').operands, ['set', 'batch_rows', '-3'], 'config set k -3');
  t.match(parse('config', 'set', 'k', '--json'), { operands: ['set', 'k', '--json'], json: false }, 'config set k --json: the value');
  t.match(parse('config', 'set', 'k', 'v', '--json'), { operands: ['set', 'k', 'v'], json: true }, 'config set k v --json');
  t.throws(() => parse('stop', '--only-empty'), new CapraError('unknown option --only-empty for stop (see capra stop --help)'));
  t.throws(() => parse('clone', '--sync', 's', '--sync', 't'), /^clone takes one --sync/);
  // Every option is refused by each command that does not list it.
  const names = Object.keys(COMMANDS) as CommandName[];
  for (const name of names) {
    const options = Object.entries(COMMANDS).flatMap(([, s]) => Object.entries(s.options as Record<string, { type: string }>));
    for (const [opt, o] of options) {
      if (Object.hasOwn(COMMANDS[name].options, opt)) continue;
      const argv = [name, `--${opt}`, ...(o.type === 'string' ? ['1'] : [])];
      t.throws(() => parse(...argv), new CapraError(`unknown option --${opt} for ${name} (see capra ${name} --help)`), argv.join(' '));
    }
  }
});

t.test('the help lists each command with its options', async (t) => {
  const all = await cli(['--help']);
  t.equal(all.code, 0, 'capra --help exits 0');
  t.equal(all.stdout, `${usage()}\n`);
  const lines = all.stdout.split('\n');
  const names = Object.keys(COMMANDS) as CommandName[];
  for (const name of names) {
    // A command's entry runs from its line to the next command's.
    const start = lines.findIndex((l) => l.startsWith(`  ${name} `));
    t.not(start, -1, `capra --help lists ${name}`);
    const end = lines.findIndex((l, i) => i > start && names.some((n) => l.startsWith(`  ${n} `)));
    const entry = lines.slice(start, end === -1 ? undefined : end).join('\n');
    for (const opt of Object.keys(COMMANDS[name].options)) t.ok(entry.includes(`[--${opt}`), `capra --help lists ${name} --${opt}`);
    const own = commandUsage(name);
    for (const opt of Object.keys(COMMANDS[name].options)) t.match(own, new RegExp(`^ +--${opt}\\b.* {2}\\S`, 'm'), `${name} --help explains --${opt}`);
  }
  const [stop, helpStop, cloneHelp, none] = await Promise.all([cli(['stop', '--help']), cli(['help', 'stop']), cli(['clone', '-h', '--sync', 's']), cli([])]);
  t.same(stop, { code: 0, stdout: `${commandUsage('stop')}\n`, stderr: '' }, 'capra stop --help');
  t.same(helpStop, stop, 'capra help stop is capra stop --help');
  t.same(cloneHelp, { code: 0, stdout: `${commandUsage('clone')}\n`, stderr: '' }, 'capra clone -h --sync s');
  t.equal(none.code, 2, 'no command: exit 2');
  t.equal(none.stdout, `${usage()}\n`, 'no command: the usage');
});
