-- The CHECK on a delta row's op was evaluated for every captured row, and
-- PostgreSQL prepares a CHECK's expression anew in every statement that
-- inserts (here: once per captured row, the trigger's INSERT being its own
-- statement), reading its stored expression back each time (perf of the server
-- under pgbench's TPC-B-like transaction, Capra's triggers on: 4% of its CPU
-- in ExecConstraints, almost all of it that reading). It
-- guarded nothing the reader does not: every op but 'T' is read as "this key
-- changed" (a forged row, which any role may insert, at worst re-sends a
-- key's current row, whatever its op).
ALTER TABLE repl.delta DROP CONSTRAINT IF EXISTS delta_op_check;
