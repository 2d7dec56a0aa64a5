import { CapraError } from '../util/errors.js';

// A setting's KEY as `capra config get/set` take it: dotted map keys, a
// quoted part for a key that holds dots, `[N]` for a list item.

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
    for (let m: RegExpExecArray | null; (m = /^\[(\d+)\]/.exec(key.slice(i))); i += m[0].length) path.push(Number(m[1]));
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
