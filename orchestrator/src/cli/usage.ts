import { COMMANDS, type CommandName, type CommandSpec, GLOBAL_OPTIONS, type OptionSpec } from './options.js';

// `capra --help` and `capra <command> --help`, written from the table of
// options that the parser accepts.

const WIDTH = 100;
/** Where the descriptions start in the list of commands. */
const COLUMN = 22;

const spec = (name: CommandName): CommandSpec => COMMANDS[name];
const optionWord = (name: string, o: OptionSpec): string =>
  o.type === 'string' ? `--${name} ${o.arg ?? 'VALUE'}` : o.optionalValue ? `--${name} [${o.arg ?? 'VALUE'}]` : `--${name}`;

/** `status [--json] [--max-lag SECONDS]`, wrapped at WIDTH under the first option. */
function synopsis(name: CommandName, indent: number): string[] {
  const s = spec(name);
  const head = s.operands ? `${name} ${s.operands}` : name;
  const lines: string[] = [];
  let line = head;
  for (const [opt, o] of Object.entries(s.options)) {
    const word = `[${optionWord(opt, o)}]`;
    if (indent + line.length + 1 + word.length <= WIDTH) line += ` ${word}`;
    else {
      lines.push(line);
      line = ' '.repeat(name.length + 1) + word;
    }
  }
  return [...lines, line];
}

/** Left column, then the description at `column` (on the next line when the left one is too long). */
function columns(left: string[], right: string[], column: number): string[] {
  const pad = ' '.repeat(column);
  const [only, ...more] = left;
  if (only !== undefined && more.length === 0 && only.length + 2 <= column) {
    return [`${only.padEnd(column)}${right[0] ?? ''}`.trimEnd(), ...right.slice(1).map((r) => pad + r)];
  }
  return [...left, ...right.map((r) => pad + r)];
}

/** The list of commands, each with its options. */
export function usage(): string {
  const lines = [
    'usage: capra [--config FILE] [--verbose] <command> [options]',
    '       capra <command> --help    what the command does, each option explained',
    '',
  ];
  for (const name of Object.keys(COMMANDS) as CommandName[]) {
    lines.push(
      ...columns(
        synopsis(name, 2).map((l) => `  ${l}`),
        spec(name).about,
        COLUMN,
      ),
    );
  }
  lines.push('', 'FILE defaults to ./capra.yml (or $CAPRA_CONFIG). Each command takes only the options listed with it.');
  return lines.join('\n');
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const left = (name: string, o: OptionSpec): string => `  ${o.short ? `-${o.short}, ` : '    '}${optionWord(name, o)}`;
  const entries = Object.entries(options);
  const column = Math.max(...entries.map(([n, o]) => left(n, o).length)) + 2;
  return entries.flatMap(([n, o]) => columns([left(n, o)], [o.help], column));
}

/** One command: its synopsis, what it does, its options and the global ones. */
export function commandUsage(name: CommandName): string {
  const s = spec(name);
  const prefix = 'usage: capra [--config FILE] [--verbose] ';
  const lines = [...synopsis(name, prefix.length).map((l, i) => (i === 0 ? prefix : ' '.repeat(prefix.length)) + l), '', ...s.about, ''];
  if (Object.keys(s.options).length > 0) lines.push('options:', ...optionLines(s.options));
  else lines.push(`${name} takes no options of its own.`);
  lines.push('', 'global options (anywhere on the line):', ...optionLines(GLOBAL_OPTIONS));
  return lines.join('\n');
}
