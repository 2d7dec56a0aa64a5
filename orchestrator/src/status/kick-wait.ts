import type { Config, SyncConfig } from '../config/types.js';
import { receiversOf } from '../config/topology.js';
import { Connections } from '../db/connections.js';
import { isConnectionError } from '../db/errors.js';
import { activeHolder } from '../daemon/job-lock.js';
import { readPaused, sendControl } from '../daemon/control.js';
import { caughtUp, currentPosition } from '../sync/delta-log.js';
import { lanePosition } from '../sync/lane-pending.js';
import { sleep } from '../util/backoff.js';
import { CapraError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { STATUS_TIMEOUT_MS } from './status.js';

/** One lane a `capra kick --wait` waited for. */
export interface KickLane {
  sync: string;
  source: string;
  target: string;
  /** The source's pg_current_snapshot() at the kick (null: the source never answered). */
  snapshot: string | null;
  /** The target has applied everything the snapshot saw committed. */
  reached: boolean;
  /** Seconds from the kick until it was reached (null: not reached). */
  seconds: number | null;
  /** What held it up, when not reached. */
  blocker?: string;
}

export interface KickResult {
  /** The active daemon that was kicked (pid@host), null: none was active. */
  daemon: string | null;
  waited: boolean;
  /** Every lane reached (true when not waiting). */
  reached: boolean;
  seconds: number;
  lanes: KickLane[];
}

export interface KickOptions {
  /** Wait until every lane has applied what was committed before the kick, at most this long. */
  waitSeconds?: number;
  /** How often the lanes are asked (ms). */
  pollMs?: number;
}

/** The least time a round of questions gets, even at the deadline. */
const LAST_LOOK_MS = 500;

const firstLine = (err: unknown): string => errorMessage(err).split('\n')[0]!;

/**
 * `capra kick`: asks the active daemon to run `syncs` now (through the
 * metadata database, wherever the daemon runs) and, with waitSeconds, waits
 * until each lane's target has applied everything its source had committed
 * at the kick: each source's pg_current_snapshot() is taken before the kick
 * is sent, and a lane is done once the position its target has applied
 * covers that snapshot (repl.caught_up, asked on the source). Every question
 * to a node is bounded by the status timeout and the deadline, so a node that
 * hangs delays nothing beyond them; it is named as the blocker.
 */
export async function kick(cfg: Config, syncs: SyncConfig[], logger: Logger, opts: KickOptions = {}): Promise<KickResult> {
  const conns = new Connections(cfg, 'capra-cli', logger, { timeoutMs: Math.min(STATUS_TIMEOUT_MS, cfg.nodeTimeoutSeconds * 1000), probe: false });
  try {
    const lanes: KickLane[] = syncs.flatMap((sync) =>
      sync.sources.flatMap((source) =>
        receiversOf(sync, source).map((target) => ({ sync: sync.name, source, target, snapshot: null, reached: false, seconds: null })),
      ),
    );
    const waiting = opts.waitSeconds !== undefined;
    const snapshots = new Map<string, string>();
    const errors = new Map<string, string>();
    if (waiting) await takeSnapshots(conns, lanes, snapshots, errors, STATUS_TIMEOUT_MS);
    const kickedAt = Date.now();
    const daemon = await conns
      .with(Connections.META, async (c) => {
        await sendControl(c, cfg.name, { op: 'kick', syncs: syncs.map((s) => s.name) });
        return activeHolder(c, cfg.name);
      })
      .catch((err: unknown) => {
        throw new CapraError(`cannot kick: the metadata database does not answer: ${firstLine(err)}`, { cause: err });
      });
    if (!waiting) return { daemon, waited: false, reached: true, seconds: 0, lanes };
    const deadline = kickedAt + opts.waitSeconds! * 1000;
    for (;;) {
      // The last round gets a moment too: a lane that caught up just now counts.
      const left = Math.max(deadline - Date.now(), LAST_LOOK_MS);
      await takeSnapshots(conns, lanes, snapshots, errors, left);
      await Promise.all(lanes.filter((l) => !l.reached && l.snapshot !== null).map((l) => checkLane(conns, cfg.name, l, kickedAt, errors, left)));
      if (lanes.every((l) => l.reached) || Date.now() >= deadline) break;
      await sleep(Math.min(opts.pollMs ?? 200, Math.max(deadline - Date.now(), 0)));
    }
    const reached = lanes.every((l) => l.reached);
    if (!reached) await explain(conns, cfg, lanes, errors);
    return { daemon, waited: true, reached, seconds: Math.round((Date.now() - kickedAt) / 100) / 10, lanes };
  } finally {
    await conns.close();
  }
}

/** Resolves with fn's value, or rejects once `ms` have passed (the question is abandoned, not the connection). */
function within<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer in time`)), ms);
  });
  return Promise.race([fn(), late]).finally(() => clearTimeout(timer));
}

/** Each source's snapshot, for the lanes that have none yet (a source that did not answer is asked again). */
async function takeSnapshots(conns: Connections, lanes: KickLane[], snapshots: Map<string, string>, errors: Map<string, string>, ms: number): Promise<void> {
  const sources = [...new Set(lanes.filter((l) => l.snapshot === null).map((l) => l.source))].filter((s) => !snapshots.has(s));
  await Promise.all(
    sources.map(async (source) => {
      try {
        snapshots.set(source, await within(ms, source, () => conns.with(source, currentPosition)));
        errors.delete(source);
      } catch (err) {
        errors.set(source, firstLine(err));
      }
    }),
  );
  for (const l of lanes) l.snapshot ??= snapshots.get(l.source) ?? null;
}

async function checkLane(conns: Connections, job: string, l: KickLane, kickedAt: number, errors: Map<string, string>, ms: number): Promise<void> {
  try {
    const done = await within(ms, `${l.source} -> ${l.target}`, async () => {
      const { position, targetError } = await lanePosition(conns, job, l.sync, l.source, l.target);
      if (targetError !== undefined && isConnectionError(targetError)) errors.set(l.target, firstLine(targetError));
      else errors.delete(l.target);
      if (position === null) {
        l.blocker = `${l.target} has no position for ${l.source} (run capra add-triggers)`;
        return false;
      }
      return conns.with(l.source, (c) => caughtUp(c, job, l.sync, position, l.snapshot!));
    });
    errors.delete(l.source);
    if (done) {
      l.reached = true;
      l.seconds = Math.round((Date.now() - kickedAt) / 100) / 10;
      delete l.blocker;
    }
  } catch (err) {
    if (isConnectionError(err)) errors.set(l.source, firstLine(err));
    else l.blocker = firstLine(err);
  }
}

/** Names what holds each unreached lane: a paused sync, a node not answering, a failing lane, no active daemon. */
async function explain(conns: Connections, cfg: Config, lanes: KickLane[], errors: Map<string, string>): Promise<void> {
  const meta = await within(STATUS_TIMEOUT_MS, 'the metadata database', () =>
    conns.with(Connections.META, async (c) => ({
      paused: new Set((await readPaused(c)).map((p) => p.sync)),
      failing: (
        await c.query<{ sync: string; source: string; target: string; error: string | null }>(
          `SELECT sync, source, target, error FROM repl.lane WHERE state = 'failing'`,
        )
      ).rows,
      daemon: await activeHolder(c, cfg.name),
    })),
  ).catch(() => null);
  for (const l of lanes.filter((x) => !x.reached)) {
    const down = [l.source, l.target].find((n) => errors.has(n));
    const failing = meta?.failing.find((f) => f.sync === l.sync && f.source === l.source && f.target === l.target);
    if (meta?.paused.has(l.sync)) l.blocker = `sync ${l.sync} is paused (capra resume)`;
    else if (down !== undefined) l.blocker = `${down} does not answer: ${errors.get(down)}`;
    else if (failing) l.blocker = `failing: ${(failing.error ?? 'no error recorded').split('\n')[0]}`;
    else if (meta && meta.daemon === null) l.blocker = 'no daemon of the job is active (capra start)';
    else l.blocker ??= 'not caught up yet';
  }
}

/** The one-line reason a wait timed out: each lane not reached and what held it. */
export function timeoutReason(r: KickResult, waitSeconds: number): string {
  const held = r.lanes.filter((l) => !l.reached).map((l) => `sync ${l.sync}, ${l.source} -> ${l.target}: ${l.blocker ?? 'not caught up yet'}`);
  return `kick --wait: not caught up after ${waitSeconds} s: ${held.join('; ')}`;
}
