import { CapraError, errorMessage } from '../util/errors.js';

// SQLSTATE codes Capra reacts to, and error wording for operators.

export const SQLSTATE = {
  lockNotAvailable: '55P03',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  queryCanceled: '57014',
  duplicateDatabase: '42P04',
  duplicateObject: '42710',
  duplicateSchema: '42P06',
  uniqueViolation: '23505',
  undefinedTable: '42P01',
  undefinedFunction: '42883',
  insufficientPrivilege: '42501',
  invalidCatalogName: '3D000',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
  featureNotSupported: '0A000',
  invalidDatetimeFormat: '22007',
} as const;

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

const connectionCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE']);

/** An error and the errors it wraps (`cause`), outermost first, at most five. */
function* causeChain(err: unknown): Generator<unknown> {
  for (let e = err, depth = 0; e != null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) yield e;
}

/** True when the error means the server could not be reached or went away (also when wrapped, as the cause of another). */
export function isConnectionError(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if (isConnectionErrorItself(e)) return true;
  }
  return false;
}

function isConnectionErrorItself(err: unknown): boolean {
  if (err instanceof NodeSilentError) return true;
  const code = sqlState(err);
  if (code && (connectionCodes.has(code) || code.startsWith('08') || code === SQLSTATE.adminShutdown || code === SQLSTATE.cannotConnectNow)) {
    return true;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return /Connection terminated|connection timeout|timeout expired|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    msg,
  );
}

/** Seconds, as messages write them: 30, or 1.5 below ten. */
export function seconds(ms: number): string {
  const s = ms / 1000;
  return String(s >= 10 ? Math.round(s) : Math.round(s * 10) / 10);
}

/**
 * A node that stopped answering: its server neither replied nor closed the
 * connection within the node timeout (frozen, or a silent network). Counts as
 * a connection failure, and names the node.
 */
export class NodeSilentError extends CapraError {
  constructor(node: string, timeoutMs: number) {
    super(`${node}: no answer for ${seconds(timeoutMs)} s`, { node });
    this.name = 'NodeSilentError';
  }
}

/** The node an error is to blame on, where it says (a CapraError's node, or its cause's). */
export function errorNode(err: unknown): string | undefined {
  for (const e of causeChain(err)) {
    if (e instanceof CapraError && e.node !== undefined) return e.node;
  }
  return undefined;
}

/**
 * A run's failure as the operator reads it: a function of schema repl that
 * the server does not have means capra was upgraded without `capra
 * install`, so the message says what to run. Install upgrades every
 * database of the job, so the hint holds whether or not the error names
 * its database.
 */
export function runFailureMessage(err: unknown): string {
  const msg = errorMessage(err);
  for (const e of causeChain(err)) {
    if (sqlState(e) === SQLSTATE.undefinedFunction && /\brepl\./.test(errorMessage(e))) {
      return `${msg} (the job's databases have capra functions older than this capra: run capra install to upgrade them)`;
    }
  }
  return msg;
}

/** The table an error is about, if it says. */
export function errorTable(err: unknown): string | undefined {
  return err instanceof CapraError ? err.table : undefined;
}

/**
 * Wraps a failure to reach a named database without ever echoing its URL. A
 * connect that timed out says how long it waited: the server took the
 * connection (or nothing refused it) and never answered.
 */
export function connectError(dbName: string, display: string, err: unknown, timeoutMs?: number): CapraError {
  const why =
    timeoutMs !== undefined && /timeout expired|timeout exceeded when trying to connect|due to connection timeout/i.test(errorMessage(err))
      ? `no answer for ${seconds(timeoutMs)} s`
      : errorMessage(err);
  return new CapraError(`cannot connect to database ${dbName} (${display}): ${why}`, { cause: err, node: dbName });
}

/**
 * A failure applying to database `db` (on `table`, when one is to blame), as
 * the operator reads it: the server's message and its detail (which names
 * the colliding key of a unique violation). The server's error stays the
 * cause, and the node is set, for exception handlers. Connection failures and
 * errors already explained pass through unchanged.
 */
export function applyError(db: string, err: unknown, table?: string, retrySoon = false): Error {
  if (err instanceof CapraError || isConnectionError(err)) return err as Error;
  const detail = (err as { detail?: unknown } | null)?.detail;
  const more = typeof detail === 'string' && detail !== '' ? ` (${detail})` : '';
  return new CapraError(`${table ? `table ${table} on ` : ''}${db}: ${errorMessage(err)}${more}`, {
    cause: err,
    node: db,
    retrySoon,
    ...(table ? { table } : {}),
  });
}
