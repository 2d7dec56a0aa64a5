-- repl.changes(p_after pg_snapshot, p_upto pg_snapshot, p_job text) -> SETOF repl.delta
-- The delta log's one definition of "the changes after a position": the rows
-- of transactions that p_after does not see and p_upto does (so committed
-- by p_upto's time), leaving out what job p_job's own appliers wrote here
-- (cascade: those came from the job and must not go back). Positions are
-- snapshots, never "txid > last txid": a transaction's rows become visible at
-- commit, in no txid order. The txid range is the index's bound; the
-- visibility tests do the rest.
-- Reads repl.delta only. Written as one plain SELECT (SQL, STABLE, not
-- STRICT) so that the planner inlines it into the caller's query: its
-- parameters become the caller's values, the delta_txid_idx range scan
-- stays, and LIMIT/ORDER BY of the caller go through.
CREATE OR REPLACE FUNCTION repl.changes(p_after pg_snapshot, p_upto pg_snapshot, p_job text) RETURNS SETOF repl.delta
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT d.*
    FROM repl.delta d
   WHERE d.txid >= pg_snapshot_xmin(p_after)
     AND d.txid < pg_snapshot_xmax(p_upto)
     AND NOT pg_visible_in_snapshot(d.txid, p_after)
     AND pg_visible_in_snapshot(d.txid, p_upto)
     AND d.origin IS DISTINCT FROM p_job
$$;
