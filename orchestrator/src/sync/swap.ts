import type pg from 'pg';
import type { BatchGrowth } from './batch-size.js';
import type { SyncConfig } from '../config/types.js';
import { syncNodes } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { applyError, errorNode, isConnectionError } from '../db/errors.js';
import { eachAtOnce } from '../util/each-at-once.js';
import { CapraError, errorMessage } from '../util/errors.js';
import type { ApplierRole } from './applier-session.js';
import type { ConflictResolver } from './conflict.js';
import type { DownNodes } from './down-nodes.js';
import { applyToNodes, commitAll, finishRun, openNodes, withholdKeys } from './swap-receivers.js';
import { type LoggedConflict, settle } from './swap-settle.js';
import { type Changes, type SourceRun, openSource, readBatch, readLater } from './swap-sources.js';

export type { LoggedConflict };

/**
 * One run of a multi-master (swap) sync: every node of the sync at once,
 * in three steps, each a module of its own: reading what the sources changed
 * (swap-sources.ts), settling conflicts (swap-settle.ts), and applying to the
 * receivers (swap-receivers.ts).
 *
 *  - Each node has one REPEATABLE READ transaction for the whole run: it is
 *    read as a source (its batch, its rows) and written as a receiver in that
 *    same snapshot, so a user's write to a key the run overwrites, committed
 *    after the snapshot, fails the run (serialization failure) and is picked
 *    up by the next one instead of being lost.
 *  - A source's batch starts at the oldest position any receiver has for it
 *    (a receiver whose commit failed last time is behind), so every receiver
 *    is given the same keys and the same decisions; applying a key is
 *    idempotent (the winner's current row, or its absence), so the receivers
 *    that are ahead lose nothing by getting it again.
 *  - A key in two or more sources' batches is a conflict, settled by the
 *    table's rule. The winner's row goes to every other node; without a
 *    conflict, the one source that changed a key is its winner.
 *  - Each receiver stores every source's new position in its own
 *    transaction; transactions commit at once, and one that fails leaves
 *    that receiver behind, to be caught up by the next run.
 */

export interface SwapState extends BatchGrowth {
  /** What each node allows the applier (see markApplier). */
  roles: Map<string, ApplierRole>;
  /** Per source, the relids whose initial copy (copy_data) to every receiver is done; undefined: no check. */
  seededRelids?: Map<string, Set<number>>;
  idleAdvancedAt?: number;
  /** Nodes left out of runs until they answer again (down, or hung). */
  down: DownNodes;
}

export interface SwapResult {
  /** Changed keys in the batch, all sources together (delta rows where keys were not listed: one source changed). */
  deltas: number;
  /** Rows written, by "source>receiver" (the winner whose rows they are); merged rows count under "(merged)>receiver". */
  rows: Map<string, number>;
  conflicts: LoggedConflict[];
  tables: string[];
  more: boolean;
  /** Nodes that could not be reached and were left out of the run, with the error. */
  down?: Map<string, string>;
  /** Receivers left behind by a user's concurrent write (see applyToNodes): run again soon. */
  behind?: number;
  unseeded?: boolean;
}

/** What one run of a sync is given. */
export interface SwapRun {
  job: string;
  sync: SyncConfig;
  batchRows: number;
  state: SwapState;
  resolver: ConflictResolver;
}

const IDLE_ADVANCE_MS = 5_000;

/**
 * Runs the sync over the nodes that can be reached. A node that is down, or
 * does not answer within the node timeout, is left out (and named in the
 * result) while at least one source and one other node are up: the others
 * keep replicating among themselves, and runs do not wait on it again until
 * it answers (state.down asks it in the background). Its positions stay
 * where they were, so when it is back the sources' batches start from there
 * again, and it gets, and gives, everything it missed. A node that stops
 * answering in the middle of a run rolls the whole run back (within the
 * timeout: the watchdog ends its connection), and the run is made again at
 * once without it.
 */
export async function runSwap(conns: Connections, run: SwapRun): Promise<SwapResult> {
  const { sync, state } = run;
  for (;;) {
    const clients = new Map<string, pg.PoolClient>();
    const down = new Map<string, string>();
    let failure: Error | undefined;
    try {
      const nodes = syncNodes(sync);
      const tried = nodes.filter((db) => !state.down.has(db));
      const connected = await Promise.allSettled(tried.map((db) => conns.connect(db)));
      let firstDown: unknown;
      for (const [i, r] of connected.entries()) {
        if (r.status === 'fulfilled') clients.set(tried[i]!, r.value);
        else if (isConnectionError(r.reason)) state.down.mark(tried[i]!, errorMessage(r.reason));
        else failure ??= r.reason as Error;
      }
      if (failure) throw failure;
      for (const db of nodes) {
        const error = state.down.error(db);
        if (error === undefined) continue;
        firstDown ??= new CapraError(error, { node: db });
        down.set(db, error);
      }
      if (clients.size < 2 || !sync.sources.some((s) => clients.has(s))) throw firstDown;
      const result = await runWith(clients, run);
      return down.size > 0 ? { ...result, down } : result;
    } catch (err) {
      failure = err as Error;
      await Promise.all([...clients.values()].map((c) => c.query('ROLLBACK').catch(() => {})));
      const node = errorNode(err);
      if (node === undefined || !clients.has(node) || !isConnectionError(err)) throw err;
      // A node went away or went silent during the run: the run was rolled back everywhere; again without it.
      state.down.mark(node, errorMessage(err));
    } finally {
      for (const c of clients.values()) c.release(failure);
    }
  }
}

async function runWith(clients: Map<string, pg.PoolClient>, { job, sync, batchRows, state, resolver }: SwapRun): Promise<SwapResult> {
  const nodes = await openNodes(clients, job, sync, state.roles);
  const applied = new Map(nodes.map((n) => [n.db, n.applied]));

  // Each source's batch: from the oldest position any receiver has for it (all sources at once, in their order).
  const sources: SourceRun[] = await eachAtOnce(
    sync.sources.filter((db) => clients.has(db)),
    async (db) => {
      try {
        return await openSource(clients.get(db)!, db, job, sync, applied, batchRows);
      } catch (err) {
        throw applyError(db, err);
      }
    },
  );
  if (state.seededRelids && sources.some((s) => [...s.keys.keys()].some((relid) => !state.seededRelids!.get(s.db)?.has(relid)))) {
    await commitAll(nodes);
    return { deltas: 0, rows: new Map(), conflicts: [], tables: [], more: false, unseeded: true };
  }
  if (sources.every((s) => s.endText === s.oldText)) {
    // Nothing for us; move positions on now and then so the logs can be purged.
    if (
      Date.now() - (state.idleAdvancedAt ?? 0) > IDLE_ADVANCE_MS &&
      sources.some((s) => nodes.some((n) => n.db !== s.db && n.applied.get(s.db) !== s.curText))
    ) {
      for (const s of sources) s.endText = s.curText;
      await finishRun(nodes, sources, job, sync);
      state.idleAdvancedAt = Date.now();
    } else {
      await commitAll(nodes);
    }
    return { deltas: 0, rows: new Map(), conflicts: [], tables: [], more: false };
  }

  // The changed keys, by table and key, with who changed them and when.
  const changes: Changes = new Map();
  let deltas = 0;
  // Keys are listed (into this process) only to find conflicts: with one source changed, there are none.
  const listKeys = sources.filter((s) => s.endText !== s.oldText).length > 1;
  for (const s of sources) {
    try {
      deltas += await readBatch(s, job, changes, listKeys);
    } catch (err) {
      throw applyError(s.db, err);
    }
  }
  for (const s of sources) {
    if (!s.more) continue;
    try {
      await readLater(s, job, changes);
    } catch (err) {
      throw applyError(s.db, err);
    }
  }

  const settled = await settle(sources, changes, sync, resolver);
  const exceptTables = await withholdKeys(sources, settled.withheld);
  const { rows, behind } = await applyToNodes(nodes, sources, changes, settled, exceptTables);
  await finishRun(nodes, sources, job, sync);
  return { deltas, rows, conflicts: settled.logged, tables: [...changes.keys()], more: behind > 0 || sources.some((s) => s.more), behind };
}
