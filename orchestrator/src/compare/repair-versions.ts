import type pg from 'pg';
import { keyDefs } from '../sync/apply.js';
import type { Version } from '../sync/conflict.js';
import { changesAfter } from '../sync/delta-log.js';
import type { TableMeta } from '../sync/table-meta.js';
import { quoteTable } from '../db/ident.js';
import { type Key, keyArray, keyId, rowsOf } from './key-sql.js';

/**
 * What a multi-master repair shows the sync's conflict rule for each
 * differing key: every source's row (null: absent) and when the source last
 * changed the key. That is the commit time of the row's version where the
 * server keeps commit timestamps (so a change made behind the sync's back
 * counts too), else the latest change of the key still in the source's delta
 * log; a version with neither counts as the oldest.
 */

/** A position before every transaction: "all of the delta log". */
const BEGINNING = '1:1:';

export async function versionsOn(c: pg.ClientBase, db: string, t: TableMeta, keys: Key[]): Promise<Map<string, Version>> {
  const rows = await rowsOf(c, t, keys);
  const head = await c.query<{ s: string; commit_ts: boolean }>(
    `SELECT pg_current_snapshot()::text AS s, current_setting('track_commit_timestamp')::boolean AS commit_ts, set_config('TimeZone', 'UTC', true)`,
  );
  const { s, commit_ts } = head.rows[0]!;
  const times = new Map<string, { us: string; at: string }>();
  const logged = await c.query<{ k: Key; us: string; at: string }>(
    `SELECT ${keyArray(t, 'r')} AS k, (extract(epoch FROM max(d.at)) * 1000000)::bigint::text AS us, max(d.at)::text AS at
       FROM ${changesAfter('$1', '$2', "''")} CROSS JOIN LATERAL jsonb_to_record(d.pk) AS r(${keyDefs(t)})
      WHERE d.relid = to_regclass($3) AND d.op <> 'T'
        AND ${keyArray(t, 'r')} IN (SELECT ARRAY(SELECT jsonb_array_elements_text(x)) FROM jsonb_array_elements($4::jsonb) x)
      GROUP BY 1`,
    [BEGINNING, s, quoteTable(t), JSON.stringify(keys)],
  );
  for (const x of logged.rows) times.set(keyId(x.k), { us: x.us, at: x.at });
  if (commit_ts) {
    const committed = await c.query<{ k: Key; us: string | null; at: string | null }>(
      `SELECT ${keyArray(t, 's')} AS k, (extract(epoch FROM pg_xact_commit_timestamp(s.xmin)) * 1000000)::bigint::text AS us,
              pg_xact_commit_timestamp(s.xmin)::text AS at
         FROM ${quoteTable(t)} s
        WHERE ${keyArray(t, 's')} IN (SELECT ARRAY(SELECT jsonb_array_elements_text(x)) FROM jsonb_array_elements($1::jsonb) x)`,
      [JSON.stringify(keys)],
    );
    for (const x of committed.rows) {
      const was = times.get(keyId(x.k));
      if (x.us !== null && (!was || BigInt(x.us) > BigInt(was.us))) times.set(keyId(x.k), { us: x.us, at: x.at! });
    }
  }
  const out = new Map<string, Version>();
  for (const k of keys) {
    const id = keyId(k);
    const time = times.get(id);
    out.set(id, {
      db,
      changedUs: time ? BigInt(time.us) : 0n,
      changedAt: time?.at ?? '-infinity',
      clock: commit_ts ? 'commit' : 'change',
      row: rows.get(id) ?? null,
    });
  }
  return out;
}

/** Keys among `keys` that the node's users changed after `since` (a compare's snapshot of it): they are the sync's to settle now. */
export async function changedSince(c: pg.ClientBase, t: TableMeta, since: string, keys: Key[]): Promise<Set<string>> {
  const r = await c.query<{ k: Key }>(
    `SELECT DISTINCT ${keyArray(t, 'r')} AS k
       FROM ${changesAfter('$1', 'pg_current_snapshot()', "''")} CROSS JOIN LATERAL jsonb_to_record(coalesce(d.pk, '{}')) AS r(${keyDefs(t)})
      WHERE d.relid = to_regclass($2) AND d.origin IS NULL`,
    [since, quoteTable(t)],
  );
  const wanted = new Set(keys.map(keyId));
  return new Set(r.rows.map((x) => keyId(x.k)).filter((id) => wanted.has(id)));
}
