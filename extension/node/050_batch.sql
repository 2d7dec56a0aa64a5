-- A batch: the changes of one lane's run, from the position its target has
-- applied (old) to the end the run chose (new). The queries that read a
-- batch's keys and rows are streamed with COPY, which takes no bind
-- parameters, so the bounds travel as transaction-local settings: the two
-- functions below are their only writer and their only reader.

-- repl.start_batch(p_old pg_snapshot, p_new pg_snapshot, p_job text) -> void
-- Sets the batch's bounds for the rest of the transaction (SET LOCAL
-- semantics: gone at COMMIT or ROLLBACK). Call it in the source's
-- transaction before reading repl.batch_changes.
CREATE OR REPLACE FUNCTION repl.start_batch(p_old pg_snapshot, p_new pg_snapshot, p_job text) RETURNS void
LANGUAGE sql VOLATILE AS $$
  SELECT set_config('capra.batch_old', p_old::text, true),
         set_config('capra.batch_new', p_new::text, true),
         set_config('capra.batch_job', p_job, true);
$$;

-- repl.batch_changes(p_relids oid[]) -> SETOF repl.delta
-- The batch's changes (repl.changes between the bounds repl.start_batch set)
-- to the tables p_relids. The settings are read and parsed once per query, in a
-- materialized CTE, not once per delta row: a snapshot with many
-- transactions in progress is costly to parse, and inlined into the filter it
-- was most of a large batch's time on the source. Inlined into the caller,
-- with repl.changes inlined in turn, so the txid range scan stays.
CREATE OR REPLACE FUNCTION repl.batch_changes(p_relids oid[]) RETURNS SETOF repl.delta
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH bounds AS MATERIALIZED (
    SELECT current_setting('capra.batch_old')::pg_snapshot AS old,
           current_setting('capra.batch_new')::pg_snapshot AS new,
           current_setting('capra.batch_job') AS job
  )
  SELECT c.*
    FROM bounds b
   CROSS JOIN LATERAL repl.changes(b.old, b.new, b.job) c
   WHERE c.relid = ANY (p_relids)
$$;
