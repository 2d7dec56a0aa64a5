import type pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.js';

/** What is known about a receiving database's session settings, kept between transactions. */
export interface ApplierRole {
  /** Whether the database accepted session_replication_role = replica (undefined: not tried yet). */
  replicaRole?: boolean;
}

/**
 * Marks a transaction that writes replicated rows (a lane's apply, a clone):
 * capra.origin/cascade for the capture triggers, so the rows are not captured
 * back to this job (and are for downstream jobs when cascading), capra.quiet
 * when they are not (read first by capra_capture_replica's WHEN: see
 * REPLICA_WHEN in triggers/ddl.ts), and
 * session_replication_role = replica where the role may set it, so the
 * receiver's own triggers and foreign keys stay quiet. Whether it may is
 * probed once (in a savepoint); after that all of it is one round trip. A
 * refusal later (a grant revoked) fails the transaction, and the next one
 * probes again.
 */
export async function markApplier(client: pg.ClientBase, job: string, cascade: boolean, state: ApplierRole): Promise<void> {
  const marks = `set_config('capra.origin', $1, true), set_config('capra.cascade', $2, true), set_config('capra.quiet', $3, true)`;
  const params = [job, cascade ? 'on' : 'off', cascade ? 'off' : 'on'];
  // A capture trigger that fires only outside replica role, with no
  // capra_capture_replica beside it (add-triggers by a role that does not own
  // the table could not set how they fire), is silent under replica role:
  // when cascading, stay in origin role on such a database rather than lose
  // the rows its downstream jobs need.
  const role = cascade
    ? `CASE WHEN EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname LIKE 'capra\\_%' AND t.tgenabled = 'O'
                          AND (t.tgname <> 'capra_capture_row' OR NOT EXISTS (SELECT 1 FROM pg_trigger r
                                 WHERE r.tgrelid = t.tgrelid AND r.tgname = 'capra_capture_replica' AND r.tgenabled = 'R')))
        THEN 'origin' ELSE 'replica' END`
    : `'replica'`;
  if (state.replicaRole === true) {
    try {
      await client.query(`SELECT ${marks}, set_config('session_replication_role', ${role}, true)`, params);
    } catch (err) {
      if (sqlState(err) === SQLSTATE.insufficientPrivilege) delete state.replicaRole;
      throw err;
    }
    return;
  }
  await client.query(`SELECT ${marks}`, params);
  if (state.replicaRole === undefined) await probeReplicaRole(client, state, role);
}

async function probeReplicaRole(client: pg.ClientBase, state: ApplierRole, role: string): Promise<void> {
  await client.query('SAVEPOINT capra_role');
  try {
    await client.query(`SELECT set_config('session_replication_role', ${role}, true)`);
    await client.query('RELEASE SAVEPOINT capra_role');
    state.replicaRole = true;
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.insufficientPrivilege) throw err;
    await client.query('ROLLBACK TO SAVEPOINT capra_role');
    state.replicaRole = false;
  }
}
