/**
 * Runs `fn` on every item at once and waits for all of them, so that no
 * work is left running behind a failure; then throws the first failure, in
 * the items' order, or returns the results in that order.
 */
export async function eachAtOnce<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const settled = await Promise.allSettled(items.map(fn));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((r) => (r as PromiseFulfilledResult<R>).value);
}
