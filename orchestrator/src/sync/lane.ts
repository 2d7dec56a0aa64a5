import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { SyncConfig } from '../config/types.js';
import type { Connections } from '../db/connections.js';
import { applyError } from '../db/errors.js';
import { CapraError } from '../util/errors.js';
import { tableLabel } from '../db/ident.js';
import { type ApplierRole, markApplier } from './applier-session.js';
import type { BatchGrowth } from './batch-size.js';
import { type ApplyPhases, noPhases, stepsMs, timed } from './apply-phases.js';
import { applyKeys, applyTruncate, fewKeys } from './apply.js';
import {
  type LaneRef,
  appliedPosition,
  batchCut,
  batchKeys,
  batchTables,
  confirmPosition,
  lockPosition,
  registeredPosition,
  startBatch,
  storePosition,
} from './delta-log.js';
import { type LaneShapes, laneShapes } from './lane-shapes.js';
import { batchEnd, formatSnapshot, parseSnapshot } from './snapshot.js';
import { matchOnTarget, sourceTables } from './table-meta.js';

/**
 * One lane is (sync, source, target). A run moves one bounded batch of the
 * source's deltas to the target:
 *
 *  - the source is read in one REPEATABLE READ snapshot S: the batch is what
 *    S sees and the lane's position did not (cut at a transaction boundary
 *    when larger than batchRows), and the rows are read in that same S;
 *  - the target applies the batch and stores the new position in one
 *    transaction, so a crash at any instant loses and repeats nothing;
 *  - the applier's session is marked (capra.origin) so its writes are not
 *    captured back, and runs as session_replication_role = replica where
 *    the role may set it, so the target's own triggers and FKs stay quiet.
 */
export interface LaneKey {
  job: string;
  sync: SyncConfig;
  source: string;
  target: string;
}

export interface RunResult {
  /** Delta rows in the batch. */
  deltas: number;
  /** Rows written on the target. */
  rows: number;
  tables: string[];
  /** The batch was cut short: run again at once. */
  more: boolean;
  /** Nothing was applied: a table is tracked that copy_data has not seen to yet (see LaneState.seededRelids). */
  unseeded?: boolean;
  /** Where an applied batch's time went (ms per step; setup is the rest of the run): for the bench. */
  phases?: ApplyPhases;
}

export interface LaneState extends ApplierRole, BatchGrowth {
  /**
   * Tables (source relids) whose initial copy (copy_data) is done; a run that
   * finds another table tracked applies nothing and says so (unseeded), so its
   * rows are copied before any change is applied. Undefined: no such check.
   */
  seededRelids?: Set<number>;
  /** When the position was last advanced over a stretch with nothing to apply. */
  idleAdvancedAt?: number;
  /** The sync's tables.options, checked on the source (lane-shapes.ts). */
  shapes?: LaneShapes;
}

const IDLE_ADVANCE_MS = 5_000;

const laneRef = (k: LaneKey): LaneRef => ({ job: k.job, sync: k.sync.name, source: k.source, target: k.target });

async function startPosition(source: pg.ClientBase, k: LaneKey): Promise<string> {
  const pos = await registeredPosition(source, laneRef(k));
  if (!pos) throw new CapraError(`sync ${k.sync.name}: ${k.source} has no consumer registered for ${k.target}: run capra add-triggers`);
  return pos;
}

export async function runLane(conns: Connections, k: LaneKey, batchRows: number, state: LaneState): Promise<RunResult> {
  const target = await conns.connect(k.target);
  let targetErr: Error | undefined;
  try {
    const source = await conns.connect(k.source);
    let sourceErr: Error | undefined;
    try {
      return await runWith(source, target, k, batchRows, state);
    } catch (err) {
      sourceErr = targetErr = err as Error;
      // A table dropped and made again has another relid: check the shapes anew.
      state.shapes = undefined;
      throw err;
    } finally {
      source.release(sourceErr);
    }
  } finally {
    target.release(targetErr);
  }
}

async function runWith(source: pg.ClientBase, target: pg.ClientBase, k: LaneKey, batchRows: number, state: LaneState): Promise<RunResult> {
  const began = performance.now();
  const phases = noPhases();
  const lane = laneRef(k);
  const known = await appliedPosition(target, lane);
  state.shapes = await laneShapes(source, k.sync, k.source, state.shapes);
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const oldText = known ?? (await startPosition(source, k));
    // The run's snapshot and the tables registered in it, in one round trip.
    const head = await source.query<{ s: string; tracked: { relid: number; key_cols: string[] }[] }>(
      `SELECT pg_current_snapshot()::text AS s,
              coalesce((SELECT json_agg(json_build_object('relid', relid::int, 'key_cols', key_cols))
                          FROM repl.consumer_table WHERE job = $1 AND sync = $2), '[]') AS tracked`,
      [k.job, k.sync.name],
    );
    const curText = head.rows[0]!.s;
    const old = parseSnapshot(oldText);
    const cur = parseSnapshot(curText);
    const keys = new Map(head.rows[0]!.tracked.map((r) => [r.relid, r.key_cols]));
    if (state.seededRelids && [...keys.keys()].some((relid) => !state.seededRelids!.has(relid))) {
      await source.query('COMMIT');
      return { deltas: 0, rows: 0, tables: [], more: false, unseeded: true };
    }
    const cut = await batchCut(source, oldText, curText, k.job, [...keys.keys()], batchRows);
    if (cut.first === null) {
      await source.query('COMMIT');
      // Nothing for us, but move the position on now and then so the log
      // can be purged and the next scan starts later.
      if (curText !== oldText && Date.now() - (state.idleAdvancedAt ?? 0) > IDLE_ADVANCE_MS) {
        await advanceIdle(source, target, lane, oldText, curText);
        state.idleAdvancedAt = Date.now();
      }
      return { deltas: 0, rows: 0, tables: [], more: false };
    }
    const { end, more } = batchEnd(old, cur, cut);
    const endText = formatSnapshot(end);
    await startBatch(source, oldText, endText, k.job);
    const perTable = await batchTables(source, [...keys.keys()]);
    const srcMeta = await sourceTables(
      source,
      perTable.map((r) => r.relid),
    );
    // A table dropped on the source since its deltas were written has nothing left to copy.
    const live = perTable.filter((r) => srcMeta.has(r.relid));

    await target.query('BEGIN');
    try {
      await markApplier(target, k.job, k.sync.cascade, state);
      const locked = await lockPosition(target, lane, oldText);
      if (locked !== oldText)
        throw new CapraError(
          `sync ${k.sync.name}: another run applied ${k.source}'s changes to ${k.target} meanwhile (a second daemon of this job?); this run was dropped and will be retried`,
        );
      const metas = await matchOnTarget(target, new Map(live.map((r) => [r.relid, srcMeta.get(r.relid)!])), keys, k.target, state.shapes.byRelid);
      // The keys of every table with few changes, in one pass over the batch.
      const small = live.filter(fewKeys).map((r) => r.relid);
      const listed = await timed(phases, 'keyScan', () => batchKeys(source, small));
      let rows = 0;
      for (const [i, t] of metas.entries()) {
        const { truncated, rows: deltaRows } = live.find((r) => r.relid === t.relid)!;
        try {
          rows += truncated
            ? await applyTruncate(source, target, t, phases)
            : await applyKeys(source, target, t, { tempName: `capra_keys_${i}`, deltaRows, listed: listed.get(t.relid), phases });
        } catch (err) {
          // Name the table and the node, unless the server went away (then no table is to blame).
          throw applyError(k.target, err, tableLabel(t));
        }
      }
      await timed(phases, 'positionWrite', () => storePosition(target, lane, endText));
      await timed(phases, 'commit', async () => {
        await target.query('COMMIT');
        await source.query('COMMIT');
      });
      await timed(phases, 'positionWrite', () => confirmPosition(source, lane, endText));
      // setup is still 0 here: it is what the timed steps leave of the run.
      phases.setup = performance.now() - began - stepsMs(phases);
      return {
        deltas: perTable.reduce((n, r) => n + r.rows, 0),
        rows,
        tables: metas.map(tableLabel),
        more,
        phases,
      };
    } catch (err) {
      await target.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } catch (err) {
    await source.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function advanceIdle(source: pg.ClientBase, target: pg.ClientBase, lane: LaneRef, oldText: string, curText: string): Promise<void> {
  await target.query('BEGIN');
  try {
    // Only from where we read it: another writer's newer position must stand.
    if ((await lockPosition(target, lane, oldText)) !== oldText) {
      await target.query('ROLLBACK');
      return;
    }
    await storePosition(target, lane, curText);
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw err;
  }
  await confirmPosition(source, lane, curText);
}
