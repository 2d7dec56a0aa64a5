import { isDeepStrictEqual } from 'node:util';
import { type Node, isCollection, isMap, isNode, isSeq, parseDocument } from 'yaml';
import { CapraError, errorMessage } from '../util/errors.js';
import { describeUrl } from '../util/url.js';
import { type KeyPath, formatKeyPath, parseKeyPath } from './key-path.js';
import { parseConfigText } from './load.js';
import { maskPasswords } from './mask.js';
import { isObj } from './schema-kit.js';
import type { Config } from './types.js';
import { envOverrides } from './validate.js';
import { formatValue, getSetting, settingError } from './view.js';

// `capra config set`: a setting addressed by a dotted KEY (key-path.ts)
// changed in the YAML text, which stays the one source of truth; the result
// is validated whole by the config schema. Everything here is pure over text
// and values.

/** The value at `path` in plain data, or undefined. */
function valueAt(data: unknown, path: KeyPath): unknown {
  let v = data;
  for (const part of path) {
    if (typeof part === 'number' ? !Array.isArray(v) : !isObj(v)) return undefined;
    v = (v as Record<string | number, unknown>)[part];
  }
  return v;
}

/**
 * VALUE as typed: read as YAML (5000 is a number, [b, a] a list, "5000" a
 * string); text that is not valid YAML is taken as a plain string, so a cron
 * expression like * /5 * * * * * needs no extra quotes. Text that starts
 * like a quoted string or a flow collection must be valid YAML.
 */
export function parseValue(text: string): { value: unknown; flow: boolean } {
  const doc = parseDocument(text);
  if (doc.errors.length === 0) {
    return { value: doc.toJS() as unknown, flow: isCollection(doc.contents) && doc.contents.flow === true };
  }
  if (/^\s*["'[{]/.test(text)) throw new CapraError(`the value is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  return { value: text, flow: false };
}

/** Environment overrides set aside: `config set` validates and reports what the file says. */
export function fileOnlyEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const overrides: readonly string[] = Object.values(envOverrides);
  return Object.fromEntries(Object.entries(env).filter(([name]) => !overrides.includes(name)));
}

export interface SetResult {
  /** The new file text (the same text when nothing changed). */
  text: string;
  /** The value as parsed from VALUE. */
  value: unknown;
  /** The resolved config before (null when the file did not validate before) and after. */
  before: Config | null;
  after: Config;
  /** The file's own value at the key before (undefined when it had none). */
  fileOld: unknown;
}

const identityKeys = new Set(['name', 'metadata']);

/**
 * Sets `key` to the YAML `valueText` in the config text. The whole result is
 * validated (unknown keys and bad values refused with the key named) before
 * anything is returned; comments and layout are kept: an existing value is
 * replaced in place, a new key is added as one line, and only edits that
 * cannot be made that way fall back to re-printing the document.
 */
export function setSetting(text: string, file: string, key: string, valueText: string, env: NodeJS.ProcessEnv = process.env): SetResult {
  const path = parseKeyPath(key);
  const top = path[0];
  if (typeof top === 'string' && identityKeys.has(top)) {
    settingError(file, key, `the job's ${top} identifies the job and is not changed by config set: uninstall, edit the file, install again`);
  }
  const fenv = fileOnlyEnv(env);
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    parseConfigText(text, file, fenv); // throws the usual "not valid YAML" message
    settingError(file, key, `the file is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  }
  let before: Config | null = null;
  try {
    before = parseConfigText(text, file, fenv);
  } catch {
    before = null; // a broken file may be mended by this very set
  }
  let parsed: { value: unknown; flow: boolean };
  try {
    parsed = parseValue(valueText);
  } catch (err) {
    settingError(file, key, errorMessage(err));
  }
  const { value, flow } = parsed;

  const fileOld = valueAt(doc.toJS(), path);
  const old = doc.getIn(path, true);

  const node = doc.createNode(value, { flow });
  if (isNode(old)) {
    node.comment = old.comment;
    node.commentBefore = old.commentBefore;
    node.spaceBefore = old.spaceBefore;
  }
  try {
    doc.setIn(path, node);
  } catch {
    // The deepest part of the path that exists is not a map (or a list, for [N]).
    let i = path.length - 1;
    while (i > 0 && doc.getIn(path.slice(0, i), true) === undefined) i--;
    const parent = formatKeyPath(path.slice(0, i));
    settingError(file, key, `${parent} is ${isSeq(doc.getIn(path.slice(0, i), true)) ? 'a list' : 'a single value'}, not a map: set ${parent} as a whole`);
  }
  const expected = doc.toJS() as unknown;
  const spliced = spliceEdit(text, path, expected);
  const next = spliced !== null && sameContents(spliced, expected) ? spliced : doc.toString({ lineWidth: 0 });
  if (next !== spliced && !sameContents(next, expected)) settingError(file, key, 'cannot be written back without changing other settings');

  let after: Config;
  try {
    after = parseConfigText(next, file, fenv);
  } catch (err) {
    const msg = errorMessage(err);
    // "...conflict.tables.public: ..." for KEY ...conflict.tables.public.orders: the dots were meant as part of a name.
    const named = /^config .*?: (\S+): /.exec(msg)?.[1];
    const hint = named && key.startsWith(`${named}.`) && !key.includes('"') ? ' (quote a part of the key that holds dots: a."b.c")' : '';
    throw new CapraError(maskPasswords(msg + hint), { cause: err });
  }
  if (before && describeUrl(after.metadata) !== describeUrl(before.metadata)) {
    settingError(
      file,
      key,
      `this would move the job's metadata database (${describeUrl(before.metadata)} -> ${describeUrl(after.metadata)}): uninstall, edit the file, install again`,
    );
  }
  return { text: next, value, before, after, fileOld };
}

function sameContents(text: string, expected: unknown): boolean {
  const doc = parseDocument(text);
  return doc.errors.length === 0 && isDeepStrictEqual(doc.toJS(), expected);
}

/**
 * The edit made in the text itself, everything else left byte for byte:
 * an existing scalar or flow value is replaced where it stands (its comment
 * stays); a missing key is added as a line at the end of the nearest
 * enclosing block map; a change inside a flow collection ([a], {x: 1})
 * rewrites that collection. Null when the edit needs more than that; the
 * caller checks the result parses to `expected`, what the Document API made.
 */
function spliceEdit(text: string, path: KeyPath, expected: unknown): string | null {
  const doc = parseDocument(text);
  const inline = (node: unknown): node is Node & { range: [number, number, number] } =>
    isNode(node) && !!node.range && (!isCollection(node) || node.flow === true);
  const replace = (node: { range: [number, number, number] }, value: unknown): string => {
    const [start, end] = node.range;
    const gap = start === end && text[start - 1] === ':' ? ' ' : ''; // "key:" with no value
    return text.slice(0, start) + gap + formatValue(value) + text.slice(end);
  };
  const old = doc.getIn(path, true);
  if (inline(old)) return replace(old, valueAt(expected, path));
  if (old !== undefined) return null;

  let i = path.length - 1;
  let parent: unknown;
  for (; i >= 0; i--) {
    parent = doc.getIn(path.slice(0, i), true);
    if (parent !== undefined) break;
  }
  const rest = path.slice(i);
  if (isMap(parent) && !parent.flow && parent.items.length > 0 && typeof rest[0] === 'string') {
    const first = parent.items[0]!.key;
    const last = parent.items[parent.items.length - 1]!;
    const lastNode = isNode(last.value) && last.value.range ? last.value : last.key;
    if (!isNode(first) || !first.range || !isNode(lastNode) || !lastNode.range) return null;
    const lineStart = text.lastIndexOf('\n', first.range[0] - 1) + 1;
    const indent = text.slice(lineStart, first.range[0]);
    if (indent.trim() !== '') return null;
    const line = `${indent}${formatValue(rest[0])}: ${formatValue(valueAt(expected, path.slice(0, i + 1)))}\n`;
    const nl = text.indexOf('\n', Math.max(lastNode.range[1] - 1, 0));
    if (nl === -1) return `${text}\n${line}`;
    return text.slice(0, nl + 1) + line + text.slice(nl + 1);
  }
  // Inside a flow collection: rewrite the outermost one on the path.
  for (let k = 1; k < path.length; k++) {
    const node = doc.getIn(path.slice(0, k), true);
    if (inline(node)) return replace(node, valueAt(expected, path.slice(0, k)));
  }
  return null;
}

/** `KEY = VALUE (was OLD); run capra reload to apply`, from the resolved configs, passwords masked. */
export function setMessage(key: string, r: SetResult): string {
  const show = (cfg: Config | null, fallback: unknown): string => {
    if (cfg) {
      try {
        return formatValue(getSetting(cfg, key));
      } catch {
        // not in the resolved config: what the file says
      }
    }
    return fallback === undefined ? 'not set' : maskPasswords(formatValue(fallback));
  };
  return `${key} = ${show(r.after, r.value)} (was ${show(r.before, r.fileOld)}); run capra reload to apply`;
}
