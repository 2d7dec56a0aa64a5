import type pg from 'pg';
import type { Connections } from '../db/connections.js';
import { type TableName, quoteIdent, quoteTable, tableLabel } from '../db/ident.js';
import { CapraError } from '../util/errors.js';
import { dropAboveOf } from './index-drop.js';
import { type CloneRequest, receiversOf, sourcesOf } from './request.js';

// A clone checks, before it empties or fills any table, that its role holds
// what every table on every database needs, and refuses in one line naming
// the grant that is missing. Otherwise a role without them would fail at the
// first table it lacks them for, after the tables before it were replaced.

/** What a source and a receiver need on each table (the grants the README lists). */
const SOURCE_PRIVILEGES = ['SELECT'];
const RECEIVER_PRIVILEGES = ['SELECT', 'INSERT', 'DELETE', 'TRUNCATE'];

/** The privileges of `wanted` the current role lacks on the table (all of them when the table is missing: the copy says so). */
async function missingPrivileges(c: pg.ClientBase, t: TableName, wanted: string[]): Promise<string[]> {
  const r = await c.query<{ p: string }>(
    `SELECT p FROM unnest($2::text[]) p WHERE to_regclass($1) IS NOT NULL AND NOT has_table_privilege(to_regclass($1), p)`,
    [quoteTable(t), wanted],
  );
  return r.rows.map((x) => x.p);
}

/**
 * Indexes a copy would drop (drop_indexes: larger than `above` bytes, backing
 * no constraint) need ownership of the table: DROP INDEX has no privilege of
 * its own. Throws, naming the owner to grant, when there are any and the role
 * does not own the table.
 */
export async function requireIndexOwnership(c: pg.ClientBase, t: TableName, above: number, db: string, option: string): Promise<void> {
  const r = await c.query<{ owner: boolean; owner_name: string; me: string; n: number }>(
    `SELECT pg_has_role(k.relowner, 'USAGE') AS owner, pg_get_userbyid(k.relowner) AS owner_name, current_user AS me,
            (SELECT count(*)::int FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
              WHERE i.indrelid = k.oid AND NOT EXISTS (SELECT 1 FROM pg_constraint n WHERE n.conindid = i.indexrelid)
                AND CASE WHEN x.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0) FROM pg_partition_tree(i.indexrelid) p)
                         ELSE pg_relation_size(i.indexrelid) END > $2) AS n
       FROM pg_class k WHERE k.oid = to_regclass($1)`,
    [quoteTable(t), above],
  );
  const row = r.rows[0];
  if (!row || row.owner || row.n === 0) return;
  throw new CapraError(
    `${option} on ${tableLabel(t)} on ${db} needs ownership of the table to drop its indexes: GRANT ${quoteIdent(row.owner_name)} TO ${quoteIdent(row.me)}, or copy without ${option}`,
  );
}

/** Throws, naming the first grant missing, unless the clone's role may do all it will do. */
export async function checkClonePrivileges(conns: Connections, req: CloneRequest): Promise<void> {
  const receivers = new Set(receiversOf(req).map((r) => r.db));
  for (const db of new Set([...sourcesOf(req), ...receivers])) {
    const wanted = receivers.has(db) ? RECEIVER_PRIVILEGES : SOURCE_PRIVILEGES;
    await conns.with(db, async (c) => {
      const me = (await c.query<{ me: string }>('SELECT current_user AS me')).rows[0]!.me;
      for (const t of req.tables) {
        const missing = await missingPrivileges(c, t, wanted);
        if (missing.length > 0) {
          throw new CapraError(
            `clone: ${me} may not ${missing.join(', ')} ${tableLabel(t)} on ${db}: GRANT ${missing.join(', ')} ON ${quoteTable(t)} TO ${quoteIdent(me)}`,
          );
        }
        const above = receivers.has(db) ? dropAboveOf(req, t) : null;
        if (above !== null) await requireIndexOwnership(c, t, above, db, req.origin === 'copy_data' ? 'copy_indexes' : 'drop_indexes');
      }
    });
  }
}
