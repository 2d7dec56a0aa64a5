import type { HandlerRef, SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { isConnectionError } from '../db/errors.js';
import { CapraError, errorMessage } from '../util/errors.js';
import { handlerName, loadHandler, sqlFunction } from './handler.js';

/**
 * Exception handlers: when applying fails on a node (a unique constraint
 * other than the key colliding across nodes, a check that one node's data
 * breaks, ...), the run has rolled back; each handler configured for the sync
 * is shown the failure and may repair its cause. One that says it did makes
 * the run retry at once; otherwise the sync retries with backoff.
 *
 * An SQL handler is a function on the failing node, `fn(jsonb) RETURNS
 * boolean`, called in a transaction of its own (its repair is an ordinary
 * local change, so it replicates). A module handler's function gets the same
 * object and a `query(db, sql, params)` to reach any node of the sync.
 */
export interface Failure {
  sync: string;
  node: string;
  table: string | null;
  sqlstate: string | null;
  message: string;
  detail: string | null;
  constraint: string | null;
}

/** What a failure tells a handler: the database error under a CapraError, with the node and table it names. */
export function describeFailure(sync: string, err: unknown): Failure | null {
  // A node that cannot be reached is nothing a handler could repair (or even reach).
  if (!(err instanceof CapraError) || err.node === undefined || isConnectionError(err)) return null;
  const pgErr = err.cause as { code?: string; message?: string; detail?: string; constraint?: string } | undefined;
  return {
    sync,
    node: err.node,
    table: err.table ?? null,
    sqlstate: pgErr?.code ?? null,
    message: pgErr?.message ?? err.message,
    detail: pgErr?.detail ?? null,
    constraint: pgErr?.constraint ?? null,
  };
}

export type ModuleExceptionHandler = (
  failure: Failure,
  tools: { query: (db: string, sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]> },
) => unknown;

/** Runs the sync's handlers in order until one repairs; returns which one did, or null. */
export async function runExceptionHandlers(conns: Connections, sync: SyncConfig, failure: Failure): Promise<string | null> {
  for (const h of sync.exceptionHandlers) {
    const name = handlerName(h);
    let repaired: boolean;
    try {
      repaired = await runOne(conns, sync, h, failure);
    } catch (err) {
      throw new CapraError(`sync ${sync.name}: exception handler ${name} failed: ${errorMessage(err)} (handling: ${failure.message})`, { cause: err });
    }
    if (repaired) return name;
  }
  return null;
}

async function runOne(conns: Connections, sync: SyncConfig, h: HandlerRef, failure: Failure): Promise<boolean> {
  if ('sql' in h) {
    const r = await conns.with(failure.node, (c) =>
      c.query<{ r: boolean | null }>(`SELECT ${sqlFunction(h)}($1::jsonb) IS TRUE AS r`, [JSON.stringify(failure)]),
    );
    return r.rows[0]?.r === true;
  }
  const fn = (await loadHandler(h.module)) as ModuleExceptionHandler;
  const nodes = new Set([...sync.sources, ...sync.targets]);
  const query = async (db: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> => {
    if (!nodes.has(db)) throw new Error(`${db} is not a database of sync ${sync.name}`);
    return (await conns.with(db, (c) => c.query(sql, params))).rows as Record<string, unknown>[];
  };
  return (await fn(failure, { query })) === true;
}
