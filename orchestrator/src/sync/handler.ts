import { pathToFileURL } from 'node:url';
import type { HandlerRef } from '../config/types.js';
import { quoteIdent } from '../db/ident.js';

/**
 * Handlers the config names, for conflicts and for exceptions: an SQL
 * function (`sql: schema.function`) or a JavaScript module (`module: path`).
 */

/** How a handler is named in the log and in messages: `sql:schema.function`, or the module's path. */
export function handlerName(h: HandlerRef): string {
  return 'sql' in h ? `sql:${h.sql}` : h.module;
}

/** An SQL handler's function, quoted for a query (validated as schema.function by the config). */
export function sqlFunction(h: { sql: string }): string {
  const [schema, fn] = h.sql.split('.') as [string, string];
  return `${quoteIdent(schema)}.${quoteIdent(fn)}`;
}

/** A handler module's function: its default export, or an export named handler. */
export async function loadHandler(path: string): Promise<(input: unknown) => unknown> {
  const mod = (await import(pathToFileURL(path).href)) as { default?: unknown; handler?: unknown };
  const fn = typeof mod.default === 'function' ? mod.default : mod.handler;
  if (typeof fn !== 'function') throw new Error(`${path} exports no function (export default function (input) { … })`);
  return fn as (input: unknown) => unknown;
}
