import { type ParseArgsConfig, parseArgs as parseTokens } from 'node:util';
import { CapraError } from '../util/errors.js';
import { type Args, COMMANDS, type CommandName, GLOBAL_OPTIONS, type OptionSpec, defaultArgs, isCommand } from './options.js';

export type { Args } from './options.js';

// node:util's parseArgs splits the words (--opt=value, -vc FILE, --) in its
// lenient mode; the checks are ours, so that each refusal is one line naming
// the option and the command (its strict mode throws several lines naming
// neither the command nor what to do).

/** The types of every option of every command, to split the words before the command is known. */
const EVERY_OPTION: NonNullable<ParseArgsConfig['options']> = Object.fromEntries(
  [GLOBAL_OPTIONS, ...Object.values(COMMANDS).map((c) => c.options as Record<string, OptionSpec>)].flatMap((specs) =>
    Object.entries(specs).map(([name, o]) => [name, { type: o.type, ...(o.short ? { short: o.short } : {}), multiple: o.multiple ?? false }]),
  ),
);

function tokenize(argv: string[]) {
  return parseTokens({ args: argv, options: EVERY_OPTION, strict: false, allowPositionals: true, tokens: true }).tokens ?? [];
}

/** Options of any command that may take a value (kick --wait [SECONDS]). */
const OPTIONAL_VALUE = new Set(
  [GLOBAL_OPTIONS, ...Object.values(COMMANDS).map((c) => c.options as Record<string, OptionSpec>)].flatMap((specs) =>
    Object.entries(specs).flatMap(([name, o]) => (o.optionalValue ? [name] : [])),
  ),
);

/** `--wait 30`: such an option takes the word right after it as its value when that word is a number. */
function takeOptionalValues(tokens: ReturnType<typeof tokenize>): ReturnType<typeof tokenize> {
  const out: ReturnType<typeof tokenize> = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1];
    if (
      t.kind === 'option' &&
      t.value === undefined &&
      OPTIONAL_VALUE.has(t.name) &&
      next?.kind === 'positional' &&
      next.index === t.index + 1 &&
      /^\d+(\.\d+)?$/.test(next.value)
    ) {
      out.push({ ...t, value: next.value, inlineValue: false });
      i++;
    } else out.push(t);
  }
  return out;
}

/** How a command and an option look on the command line, for messages: `capra status --max-lag SECONDS`. */
function example(command: CommandName | undefined, flag: string, o: OptionSpec): string {
  return ['capra', ...(command ? [command] : []), flag, ...(o.type === 'string' ? [o.arg ?? 'VALUE'] : [])].join(' ');
}

const seeHelp = (command: CommandName | undefined): string => `(see capra ${command ? `${command} ` : ''}--help)`;

/**
 * `capra [--config FILE] [--verbose] <command> [options]`: global options may
 * come anywhere, a command's own options anywhere after or before it; an
 * option of another command is refused.
 */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Args {
  let tokens = tokenize(argv);
  const words = tokens.flatMap((t) => (t.kind === 'positional' ? [t] : []));
  // The VALUE of `config set KEY VALUE` is taken as it is, even "-3".
  let value: string | undefined;
  if (words[0]?.value === 'config' && words[1]?.value === 'set' && words[2] !== undefined && words[2].index + 1 < argv.length) {
    const at = words[2].index + 1;
    value = argv[at];
    tokens = tokenize(argv.filter((_, i) => i !== at));
  }

  tokens = takeOptionalValues(tokens);
  const a = defaultArgs(env);
  const [name, ...operands] = tokens.flatMap((t) => (t.kind === 'positional' ? [t.value] : []));
  if (name !== undefined && !isCommand(name)) throw new CapraError(`unknown command ${name} ${seeHelp(undefined)}`);
  if (value !== undefined) operands.splice(2, 0, value);
  a.command = name;
  a.operands = operands;
  const own: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS, ...(name ? COMMANDS[name].options : {}) };

  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const o = Object.hasOwn(own, t.name) ? own[t.name] : undefined;
    if (!o) throw new CapraError(`unknown option ${t.rawName}${name ? ` for ${name}` : ''} ${seeHelp(name)}`);
    const flag = t.rawName.startsWith('--') ? t.rawName : `--${t.name}`;
    if (o.type === 'boolean' && t.value !== undefined && !o.optionalValue) throw new CapraError(`option ${flag} takes no value (${example(name, flag, o)})`);
    if (o.type === 'string' && t.value === undefined) throw new CapraError(`option ${flag} needs a value (${example(name, flag, o)})`);
    o.set(a, t.value ?? '', flag);
  }

  if (name === 'help') {
    // `capra help status` is `capra status --help`.
    if (operands.length > 1) throw new CapraError(`unexpected argument ${operands[1]} for help ${seeHelp(undefined)}`);
    const [topic] = operands;
    if (topic !== undefined && !isCommand(topic)) throw new CapraError(`unknown command ${topic} ${seeHelp(undefined)}`);
    // `capra help --help` is help's own.
    return { ...a, help: true, command: topic ?? (a.help ? 'help' : undefined), operands: [] };
  }
  if (a.help) return a;
  if (name !== undefined && !('operands' in COMMANDS[name]) && operands.length > 0) {
    throw new CapraError(`unexpected argument ${operands[0]} for ${name} ${seeHelp(name)}`);
  }
  // One clone per sync: a second --sync is refused, not merged.
  if (name === 'clone' && a.syncs.length > 1) throw new CapraError('clone takes one --sync (queue one clone per sync)');
  return a;
}
