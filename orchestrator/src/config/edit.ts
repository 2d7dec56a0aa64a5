import { isDeepStrictEqual } from 'node:util';
import { type Node, isCollection, isMap, isNode, isSeq, parseDocument, stringify } from 'yaml';
import { CapraError, errorMessage } from '../db/errors.js';
import { describeUrl } from '../db/url.js';
import { parseConfigText } from './load.js';
import type { Config, ConflictRule, ConflictStrategy, HandlerRef } from './types.js';

// `capra config get/set`: settings addressed by a dotted KEY, read from the
// resolved Config and changed in the YAML text, which stays the one source
// of truth. Everything here is pure over text and values.

/** A parsed KEY: map keys, and list indexes from `[N]`. */
export type KeyPath = (string | number)[];

/**
 * `syncs.shop.kick` -> ['syncs', 'shop', 'kick']. A part in double quotes may
 * hold dots (`syncs.shop.tables.keys."public.events"`; `\"` and `\\` inside);
 * `[N]` after a part is a list index (`syncs.shop.sources[0]`).
 */
export function parseKeyPath(key: string): KeyPath {
  const bad = (why: string): never => {
    throw new CapraError(`bad key ${key === '' ? '""' : key}: ${why}`);
  };
  if (key === '') bad('it is empty');
  const path: KeyPath = [];
  let i = 0;
  for (;;) {
    if (key[i] === '"') {
      let part = '';
      for (i++; ; i++) {
        const c = key[i];
        if (c === undefined) bad('a quoted part is not closed');
        if (c === '"') break;
        if (c === '\\') {
          const next = key[++i];
          if (next === undefined) bad('it ends with a backslash');
          part += next;
        } else {
          part += c;
        }
      }
      i++;
      path.push(part);
    } else {
      let j = i;
      while (j < key.length && !'.["'.includes(key[j]!)) j++;
      if (j === i) bad(`an empty part at character ${i + 1}`);
      path.push(key.slice(i, j));
      i = j;
    }
    for (let m; (m = /^\[(\d+)\]/.exec(key.slice(i))); i += m[0].length) path.push(Number(m[1]));
    if (i === key.length) return path;
    if (key[i] !== '.') bad(`unexpected ${key[i]} at character ${i + 1} (quote a part that holds dots: a."b.c")`);
    if (++i === key.length) bad('it ends with a dot');
  }
}

/** The canonical spelling of a key path, quoting parts that need it. */
export function formatKeyPath(path: KeyPath): string {
  let s = '';
  for (const part of path) {
    if (typeof part === 'number') s += `[${part}]`;
    else s += (s ? '.' : '') + (/^[^."[\]\\]+$/.test(part) ? part : `"${part.replace(/["\\]/g, '\\$&')}"`);
  }
  return s;
}

/** A connection URL with its password (in the userinfo or a password= parameter) shown as ***. */
export function maskPassword(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s.exec(url);
  if (!m) return url;
  let [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) authority = `${userinfo.slice(0, colon)}:***${authority.slice(at)}`;
  }
  rest = rest.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return scheme + authority + rest;
}

/** Every URL with a password inside a free text (an error message) masked. */
export function maskPasswords(text: string): string {
  return text.replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"',]*/g, (url) => maskPassword(url));
}

/**
 * The resolved config in the config file's own shape (snake_case keys,
 * defaults filled in, kick and conflict in their long form), with passwords
 * masked unless `mask` is false. It is itself a valid config file.
 */
export function resolvedView(cfg: Config, mask = true): Record<string, unknown> {
  const url = mask ? maskPassword : (u: string): string => u;
  return {
    name: cfg.name,
    metadata: url(cfg.metadata),
    databases: Object.fromEntries(Object.entries(cfg.databases).map(([db, u]) => [db, url(u)])),
    syncs: Object.fromEntries(
      Object.values(cfg.syncs).map((s) => [
        s.name,
        {
          sources: s.sources,
          targets: s.targets,
          tables: { include: s.tables.include, exclude: s.tables.exclude, keys: s.tables.keys },
          conflict: {
            default: ruleText(s.conflict.default),
            tables: Object.fromEntries(Object.entries(s.conflict.tables).map(([t, r]) => [t, ruleText(r)])),
          },
          copy_data: s.copyData,
          kick: { notify: s.kick.notify, cron: s.kick.cron },
          cascade: s.cascade,
          exception_handlers: s.exceptionHandlers.map(handlerText),
        },
      ]),
    ),
    run_dir: cfg.runDir,
    log_dir: cfg.logDir,
    log_level: cfg.logLevel,
    batch_rows: cfg.batchRows,
    poll_seconds: cfg.pollSeconds,
    node_timeout_seconds: cfg.nodeTimeoutSeconds,
  };
}

/** A handler as the config file writes it. */
export function handlerText(h: HandlerRef): string {
  return 'sql' in h ? `sql:${h.sql}` : h.module;
}

function ruleText(r: ConflictRule): ConflictStrategy | string[] | { handler: string } {
  return typeof r === 'object' && !Array.isArray(r) ? { handler: handlerText(r.handler) } : r;
}

/** Maps whose keys the user names (databases, syncs, tables), as opposed to fixed settings. */
function isNamedEntries(path: KeyPath): boolean {
  const p = path.map((x) => String(x));
  return (p.length === 1 && (p[0] === 'databases' || p[0] === 'syncs'))
    || (p.length === 4 && p[0] === 'syncs' && ((p[2] === 'tables' && p[3] === 'keys') || (p[2] === 'conflict' && p[3] === 'tables')));
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function failAt(file: string, key: string, why: string): never {
  throw new CapraError(maskPasswords(`config ${file}: ${key}: ${why}`));
}

/** The value at `key` in the resolved view (defaults included, passwords masked). */
export function getSetting(cfg: Config, key: string): unknown {
  const path = parseKeyPath(key);
  let v: unknown = resolvedView(cfg);
  for (const [i, part] of path.entries()) {
    const parent = formatKeyPath(path.slice(0, i));
    if (typeof part === 'number') {
      if (!Array.isArray(v)) failAt(cfg.file, key, `${parent} is not a list`);
      if (part >= v.length) failAt(cfg.file, key, `${parent} has ${v.length} item(s), no [${part}]`);
      v = v[part];
    } else if (isObj(v)) {
      if (!Object.hasOwn(v, part)) {
        const keys = Object.keys(v);
        if (isNamedEntries(path.slice(0, i))) {
          failAt(cfg.file, key, `no entry ${part} in ${parent} (${keys.length ? `it has: ${keys.join(', ')}` : 'it is empty'})`);
        }
        failAt(cfg.file, key, `unknown key (expected one of: ${keys.join(', ')})`);
      }
      v = v[part];
    } else {
      failAt(cfg.file, key, `unknown key (${parent} is a single value, not a map)`);
    }
  }
  return v;
}

/** The value at `path` in plain data, or undefined. */
function valueAt(data: unknown, path: KeyPath): unknown {
  let v = data;
  for (const part of path) {
    if (typeof part === 'number' ? !Array.isArray(v) : !isObj(v)) return undefined;
    v = (v as Record<string | number, unknown>)[part];
  }
  return v;
}

/** A value as one line of YAML: a scalar, or a flow list/map. */
export function formatValue(v: unknown): string {
  return stringify(v, { collectionStyle: 'flow', flowCollectionPadding: false, lineWidth: 0 }).trimEnd();
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
  const { CAPRA_LOG_LEVEL: _l, CAPRA_RUN_DIR: _r, CAPRA_LOG_DIR: _d, ...rest } = env;
  return rest;
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
    failAt(file, key, `the job's ${top} identifies the job and is not changed by config set: uninstall, edit the file, install again`);
  }
  const fenv = fileOnlyEnv(env);
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    parseConfigText(text, file, fenv); // throws the usual "not valid YAML" message
    failAt(file, key, `the file is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
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
    failAt(file, key, errorMessage(err));
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
    failAt(file, key, `${parent} is ${isSeq(doc.getIn(path.slice(0, i), true)) ? 'a list' : 'a single value'}, not a map: set ${parent} as a whole`);
  }
  const expected = doc.toJS() as unknown;
  const spliced = spliceEdit(text, path, expected);
  const next = spliced !== null && sameContents(spliced, expected) ? spliced : doc.toString({ lineWidth: 0 });
  if (next !== spliced && !sameContents(next, expected)) failAt(file, key, 'cannot be written back without changing other settings');

  let after: Config;
  try {
    after = parseConfigText(next, file, fenv);
  } catch (err) {
    const msg = errorMessage(err);
    // "...conflict.tables.public: ..." for KEY ...conflict.tables.public.orders: the dots were meant as part of a name.
    const named = /^config .*?: (\S+): /.exec(msg)?.[1];
    const hint = named && key.startsWith(named + '.') && !key.includes('"') ? ' (quote a part of the key that holds dots: a."b.c")' : '';
    throw new CapraError(maskPasswords(msg + hint), { cause: err });
  }
  if (before && describeUrl(after.metadata) !== describeUrl(before.metadata)) {
    failAt(file, key, `this would move the job's metadata database (${describeUrl(before.metadata)} -> ${describeUrl(after.metadata)}): uninstall, edit the file, install again`);
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
