-- The capture triggers run as the role that writes to the table, not as the
-- role that installed them, so every writer must be able to add its deltas.
-- Granted to PUBLIC so that any role that may write a replicated table
-- replicates, without the admin having to know every writer. It allows no
-- reading (no SELECT) and nothing beyond inserting delta rows: a role could
-- add forged deltas, which at worst re-send a key's current row (or its
-- absence) from this node to the others, or fill the log; the README says so,
-- and an admin who wants it narrower revokes from PUBLIC and grants to the
-- writing roles.
GRANT USAGE ON SCHEMA repl TO PUBLIC;
GRANT INSERT ON repl.delta TO PUBLIC;
