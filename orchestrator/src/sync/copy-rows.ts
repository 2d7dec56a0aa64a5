import { performance } from 'node:perf_hooks';
import { finished, pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { discardConnection } from '../db/connections.js';
import { type ApplyPhases, timed } from './apply-phases.js';
import { Tee } from './tee.js';

/**
 * Moving rows between servers for the apply: a source's COPY out streamed
 * into one or several targets' COPY in (several fed at once by one COPY
 * out, see Tee), and the DELETE of a batch's keys on each target run while
 * the source already sends the rows. No row is parsed here. A COPY torn
 * down midway leaves its source's connection unusable: it is ended (see
 * discardConnection), and with it the source's transaction.
 */

/**
 * What a target made of a table's keys: the rows it took, or the error it
 * failed with: its DELETE's (the others went on, see deleteThenCopy), or its
 * COPY's (copyFailed: the source's connection is ended, and the run must
 * fail; a target whose COPY only ended early because another's failed has
 * a "premature close" error, see realFailure).
 */
export type Outcome = { rows: number } | { error: unknown; copyFailed?: true };

const prematureClose = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === 'ERR_STREAM_PREMATURE_CLOSE';

/** The index of the target whose failure the outcomes are about: a failed COPY before a failed DELETE; -1 when none failed. */
export function realFailure(outcomes: Outcome[]): number {
  const copy = outcomes.findIndex((o) => 'copyFailed' in o && !prematureClose(o.error));
  return copy >= 0 ? copy : outcomes.findIndex((o) => 'error' in o);
}

/** The rows of a single target's outcome, or its error thrown. */
export function rowsOf(outcome: Outcome): number {
  if ('error' in outcome) throw outcome.error;
  return outcome.rows;
}

/**
 * Streams a query's rows from the source into each target's COPY (one
 * target, or several fed by one COPY out: see Tee). When any side fails,
 * the source's COPY is torn down midway and its connection can take no more
 * queries (see discardConnection): it is ended, and with it the source's
 * transaction. Returns the rows the (first) target took.
 *
 * With `phases` (one target), the copy's time is split between rowFetch
 * (until the source has sent its last row) and copyIn (what the target took
 * after that, and while the source was held back because the target had not
 * taken the rows sent so far): the two overlap in the stream, and this
 * charges the waits to the side that caused them.
 */
export async function copyBetween(
  source: pg.ClientBase,
  targets: pg.ClientBase[],
  selectSql: string,
  copyInSql: string,
  phases?: ApplyPhases,
): Promise<number> {
  const out = source.query(copyTo(`COPY (${selectSql}) TO STDOUT`));
  const intos = targets.map((c) => c.query(copyFrom(copyInSql)));
  const t0 = performance.now();
  let fetched = 0;
  let held = 0;
  let heldSince: number | null = null;
  if (phases) {
    // pipeline pauses the source when the target's buffer is full and lets it flow on 'drain'.
    out.on('pause', () => void (heldSince ??= performance.now()));
    intos[0]!.on('drain', () => {
      if (heldSince !== null) held += performance.now() - heldSince;
      heldSince = null;
    });
    out.once('end', () => void (fetched = performance.now()));
  }
  // One target takes the source's COPY straight (a stream in between costs a call per row); several share it.
  const copies =
    intos.length === 1
      ? [pipeline(out, intos[0]!)]
      : new Tee(out, intos.length).branches.map((b, i) =>
          pipeline(b, intos[i]!).catch((err: unknown) => {
            // The source's COPY is torn down with it: the other targets' COPYs end early too.
            out.destroy();
            throw err;
          }),
        );
  const settled = await Promise.allSettled([finished(out), ...copies]);
  const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (errors.length > 0) {
    discardConnection(source);
    // The side that failed, not another's "premature close" when the failure tore its stream down.
    throw errors.find((e) => !prematureClose(e)) ?? errors[0];
  }
  if (phases) {
    const done = performance.now();
    const end = fetched || done;
    phases.rowFetch += end - t0 - held;
    phases.copyIn += done - end + held;
  }
  return intos[0]!.rowCount ?? 0;
}

/**
 * How many bytes of a table's rows may wait in memory for a target's
 * DELETE to end (see deleteThenCopy); past it the source is held back (its
 * COPY waits on the socket), so a batch of wide rows costs no more memory.
 */
const PREFETCH_BYTES = 16 * 1024 * 1024;

/** A target of deleteThenCopy: its connection, its DELETE of the batch's keys, and its COPY in (`COPY table (columns) FROM STDIN`). */
interface Deleting {
  client: pg.ClientBase;
  del: () => Promise<unknown>;
  copyIn: string;
}

/**
 * Deletes a batch's keys on each target (its `del`) while the source
 * already sends the keys' current rows (`copyOut`, a COPY TO STDOUT, every
 * target taking the same rows), then copies the rows into each target as
 * soon as its DELETE is done: the source's row fetch and the targets'
 * DELETEs run at once, each on its own server, instead of one after the
 * other. The rows sent meanwhile wait here, up to PREFETCH_BYTES.
 *
 * A target whose DELETE fails is given up (its outcome is the error) and
 * the others go on; the source's rows are read to their end either way, so
 * its connection can take the next query (a multi-master run goes on after
 * one receiver's serialization failure). If a target's COPY fails, the
 * source's connection is ended, as by copyBetween, and that target's
 * outcome is the error, marked copyFailed (the others' COPYs end early):
 * the caller must fail the run. If the source fails, its error is thrown.
 *
 * With `phases` (one target): targetDelete is the DELETE's time; the
 * source's time until its last row is rowFetchUnderDelete as far as the
 * DELETE ran, and rowFetch beyond it; copyIn is the rest.
 */
export async function deleteThenCopy(source: pg.ClientBase, copyOut: string, targets: Deleting[], phases?: ApplyPhases): Promise<Outcome[]> {
  const began = performance.now();
  const out = source.query(copyTo(copyOut));
  // Both sides of each branch (a PassThrough) buffer up to their mark: half each.
  const tee = new Tee(out, targets.length, PREFETCH_BYTES / 2);
  let fetchedAt = 0;
  let deletedAt = 0;
  out.once('end', () => void (fetchedAt = performance.now()));
  const applying = targets.map(async (target, i): Promise<Outcome> => {
    const branch = tee.branches[i]!;
    try {
      await timed(phases, 'targetDelete', target.del);
    } catch (error) {
      tee.drop(branch);
      return { error };
    }
    deletedAt = Math.max(deletedAt, performance.now());
    const into = target.client.query(copyFrom(target.copyIn));
    try {
      await pipeline(branch, into);
    } catch (error) {
      // The source's COPY is torn down with it: the other targets' COPYs end early too.
      discardConnection(source);
      out.destroy();
      return { error, copyFailed: true };
    }
    return { rows: into.rowCount ?? 0 };
  });
  const [fetched, ...settled] = await Promise.allSettled([finished(out), ...applying]);
  const outcomes = settled.map((r) => (r as PromiseFulfilledResult<Outcome>).value);
  const failedCopy = outcomes.some((o) => 'copyFailed' in o && !prematureClose(o.error));
  if (fetched!.status === 'rejected' && !failedCopy) {
    // The source failed (the targets' COPYs ended early because of it).
    discardConnection(source);
    throw fetched.reason;
  }
  if (phases && deletedAt > 0 && !outcomes.some((o) => 'error' in o)) {
    const done = performance.now();
    const fetchedEnd = fetchedAt || done;
    phases.rowFetchUnderDelete += Math.min(fetchedEnd, deletedAt) - began;
    phases.rowFetch += Math.max(0, fetchedEnd - deletedAt);
    phases.copyIn += done - Math.max(fetchedEnd, deletedAt);
  }
  return outcomes;
}
