// Errors for the operator, shared by every folder (config/ and cli/ included,
// which must not need a database module for them).

export function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return errorMessage(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** An error whose message is for the operator; the CLI prints only this line. */
export class CapraError extends Error {
  /** The table the error is about (schema.table as tableLabel writes it), when there is one. */
  readonly table?: string;
  /** The database the error happened on, when one is to blame. */
  readonly node?: string;
  /** A clash with a user's concurrent write: trying again at once is the cure, not backing off. */
  readonly retrySoon: boolean;

  constructor(message: string, options?: { cause?: unknown; table?: string; node?: string; retrySoon?: boolean }) {
    super(message, options);
    this.name = 'CapraError';
    if (options?.table !== undefined) this.table = options.table;
    if (options?.node !== undefined) this.node = options.node;
    this.retrySoon = options?.retrySoon ?? false;
  }
}
