/**
 * Every advisory lock Capra takes, registered here so that no two can meet.
 * All use the two-int form (class, key): PostgreSQL keeps it apart from the
 * one-bigint form other software uses, and the class keeps Capra's keys
 * apart from each other.
 *
 *  - A job's lock (daemon/job-lock.ts) is (JOB_LOCK_CLASS, hashtext(job)):
 *    its key may be any int4, so no fixed key shares its class.
 *  - Fixed keys are (FIXED_LOCK_CLASS, one of FIXED_LOCKS). The SQL in
 *    extension/ takes them by number; test/advisory-locks.test.ts checks
 *    that every lock there and in orchestrator/src is one of these.
 *  - postgres-migrations takes its own lock in the one-bigint form
 *    (db/side-migrations.ts lists its statement), which cannot meet these.
 */

/** "Capr": a job's lock, keyed by hashtext(job name). Fixed since the first release: a standby of an older version must see it. */
export const JOB_LOCK_CLASS = 0x43617072;

/** "Caps": the fixed keys below. */
export const FIXED_LOCK_CLASS = 0x43617073;

export const FIXED_LOCKS = {
  /**
   * Install/uninstall of either side of a database (session lock): install
   * tells a side's objects by what appeared in schema repl while it ran, so
   * the two sides never install at once (db/schema-side.ts).
   */
  install: 1,
  /** CREATE OR REPLACE of generated per-table functions (repl.make_capture, repl.make_kick: transaction lock). */
  generatedFunctions: 3,
} as const;
