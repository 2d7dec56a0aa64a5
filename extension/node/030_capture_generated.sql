-- Per-table trigger functions, generated with the table's key columns and
-- the jobs to notify written into static SQL: plans are cached and nothing
-- is looked up or built per write, which makes capture several times cheaper
-- for single-row writes than a generic function that reads TG_ARGV and runs
-- dynamic SQL (figures: `npm run bench`). Named by the table's oid, so a
-- rename changes nothing; bodies are passed as quoted literals, so no column
-- name can break out of them.

-- Signatures of before: a second signature beside the new one would make an
-- unqualified DROP FUNCTION of the name ambiguous. make_kick and
-- refresh_kicks took no kick window; make_capture wrote no kick.
DROP FUNCTION IF EXISTS repl.make_kick(regclass);
DROP FUNCTION IF EXISTS repl.refresh_kicks();
DROP FUNCTION IF EXISTS repl.make_capture(regclass, text[]);
DROP FUNCTION IF EXISTS repl.refresh_captures();
DROP FUNCTION IF EXISTS repl.kick_code(regclass);

-- repl.kick_code(rel regclass, window_ms integer) -> (due text, other_jobs text)
-- The kick's statements for `rel`, as the generated functions run them: a
-- pg_notify on its own channel capra_<job> for each job capturing `rel` with
-- kick enabled (jobs sharing a node never share a channel; jobs on cron
-- kicks are left out). due is the ELSIF branch that sends a user's write's
-- kick when the kick clock says the window has passed; other_jobs the
-- statements for an applier's write, which skip the job whose applier is
-- writing (capra.origin). Both '' when no job wants kicks. Creates the
-- table's kick clock, the sequence repl.kick_clock_<oid>, if it is missing.
-- NOTIFY serialises the commits of every notifying transaction on one
-- database-wide lock, held through the commit's WAL flush: with one kick per
-- commit, 64 busy clients lost most of their throughput. So a user's write
-- kicks the table at most once per kick window by all sessions together: the
-- time of its last kick is kept in the kick clock (read and set outside any
-- transaction's visibility, with no row lock to wait for). The window and the
-- daemon's linger that picks up the skipped kicks' commits are one setting,
-- orchestrator/src/db/kick-timing.ts, which every caller passes in. Writers
-- need SELECT and UPDATE on the clock; it is granted to PUBLIC like INSERT on
-- repl.delta.
-- An applier's own write (cascade) kicks only the other jobs, and so neither
-- reads nor sets the clock: a kick that its own job never got must not stand
-- for a user's write that follows within the window. Appliers commit once
-- per run, so their kicks need no limit.
CREATE OR REPLACE FUNCTION repl.kick_code(p_rel regclass, p_window_ms integer, OUT due text, OUT other_jobs text)
LANGUAGE plpgsql AS $gen$
DECLARE
  v_clock text := 'kick_clock_' || p_rel::oid;
  v_all   text;
BEGIN
  SELECT coalesce(string_agg(format('    PERFORM pg_notify(%L, '''');', 'capra_' || j.job), E'\n' ORDER BY j.job), ''),
         coalesce(string_agg(format('    IF current_setting(''capra.origin'', true) IS DISTINCT FROM %L THEN PERFORM pg_notify(%L, ''''); END IF;', j.job, 'capra_' || j.job), E'\n' ORDER BY j.job), '')
    INTO v_all, other_jobs
    FROM (SELECT DISTINCT c.job
            FROM repl.consumer c JOIN repl.consumer_table t USING (job, sync)
           WHERE t.relid = p_rel AND c.kick) j;
  EXECUTE format('CREATE SEQUENCE IF NOT EXISTS repl.%I MINVALUE 0 START 0', v_clock);
  EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE repl.%I TO PUBLIC', v_clock);
  due := CASE WHEN v_all = '' THEN '' ELSE format(
$k$
  ELSIF (extract(epoch FROM clock_timestamp()) * 1000)::bigint - coalesce(pg_sequence_last_value('repl.%1$I'::regclass), 0) >= %2$s THEN
    PERFORM setval('repl.%1$I'::regclass, (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
%3$s$k$, v_clock, p_window_ms, v_all) END;
END
$gen$;

-- repl.make_capture(rel regclass, keys text[], window_ms integer) -> text
-- Creates or replaces repl.capture_<oid>(), the row-level AFTER INSERT,
-- UPDATE, DELETE trigger function of `rel`: one repl.delta row per change,
-- two for an update that changes the key (old and new key). Returns its name.
-- It also serves the statement-level AFTER TRUNCATE trigger (one 'T' row), so
-- every trigger on the table depends on a function of ours only: a role that
-- does not own the table (and so may not DROP TRIGGER) removes them all by
-- DROP FUNCTION ... CASCADE.
-- It kicks too (repl.kick_code), each row checking the kick clock: a kick
-- trigger of its own, called once per statement, cost writers 6 points of
-- their TPS (0.72 against 0.78 without it, npm run bench:capture,
-- 2026-12-06), most of it the call itself; in the capture function the
-- check costs an expression (0.75 against 0.73 with the kick in a trigger of
-- its own, and 0.77 with no kick, in one later run). The keys are kept as
-- the function's comment (a JSON array), so that repl.refresh_kicks can
-- write it again when the consumers change, with the key it was made with.
-- The rows carry rel's oid, not TG_RELID: on a partitioned table the trigger
-- runs as a clone on each partition, and the change belongs to the parent.
-- PL/pgSQL prepares each expression (an IF's condition, an assignment) anew
-- in every transaction that evaluates it, and a writer's short transaction
-- calls the function once or twice: so the body evaluates as few as a write
-- needs. An update (the commonest write) is tested first, and the origin is
-- read where the row is written, not kept in a variable.
CREATE OR REPLACE FUNCTION repl.make_capture(p_rel regclass, p_keys text[], p_window_ms integer) RETURNS text
LANGUAGE plpgsql AS $gen$
DECLARE
  v_name    text := 'capture_' || p_rel::oid;
  v_new     text;
  v_old     text;
  v_changed text;
  v_kick    record;
  v_body    text;
BEGIN
  IF coalesce(array_length(p_keys, 1), 0) = 0 THEN
    RAISE EXCEPTION 'repl.make_capture: % has no key columns', p_rel;
  END IF;
  IF p_window_ms IS NULL OR p_window_ms < 0 THEN
    RAISE EXCEPTION 'repl.make_capture: the kick window must be 0 ms or more, not %', coalesce(p_window_ms::text, 'NULL');
  END IF;
  SELECT 'jsonb_build_object(' || string_agg(format('%L, NEW.%I', k, k), ', ' ORDER BY o) || ')',
         'jsonb_build_object(' || string_agg(format('%L, OLD.%I', k, k), ', ' ORDER BY o) || ')',
         string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', k, k), ' OR ' ORDER BY o)
    INTO v_new, v_old, v_changed
    FROM unnest(p_keys) WITH ORDINALITY AS u(k, o);
  -- CREATE OR REPLACE of one function from two sessions at once fails; serialise.
  PERFORM pg_advisory_xact_lock(1130459251, 3); -- FIXED_LOCK_CLASS, generatedFunctions (orchestrator/src/db/advisory-locks.ts)
  SELECT * INTO v_kick FROM repl.kick_code(p_rel, p_window_ms);
  v_body := format(
$b$BEGIN
  IF current_setting('capra.origin', true) <> '' THEN
    IF current_setting('capra.cascade', true) IS DISTINCT FROM 'on' THEN
      RETURN NULL;
    END IF;
%5$s%6$s
  END IF;
  IF TG_OP = 'UPDATE' THEN
    INSERT INTO repl.delta (relid, op, pk, origin) VALUES (%4$s, 'U', %1$s, nullif(current_setting('capra.origin', true), ''));
    IF %3$s THEN
      INSERT INTO repl.delta (relid, op, pk, origin) VALUES (%4$s, 'U', %2$s, nullif(current_setting('capra.origin', true), ''));
    END IF;
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO repl.delta (relid, op, pk, origin) VALUES (%4$s, 'I', %1$s, nullif(current_setting('capra.origin', true), ''));
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO repl.delta (relid, op, pk, origin) VALUES (%4$s, 'D', %2$s, nullif(current_setting('capra.origin', true), ''));
  ELSE
    INSERT INTO repl.delta (relid, op, pk, origin) VALUES (%4$s, 'T', NULL, nullif(current_setting('capra.origin', true), ''));
  END IF;
  RETURN NULL;
END$b$, v_new, v_old, v_changed, p_rel::oid, v_kick.other_jobs, v_kick.due);
  EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, v_body);
  EXECUTE format('COMMENT ON FUNCTION repl.%I() IS %L', v_name, to_jsonb(p_keys)::text);
  RETURN v_name;
END
$gen$;

-- repl.make_kick(rel regclass, window_ms integer) -> text
-- Creates or replaces repl.kick_<oid>(), the statement-level kick trigger
-- function of a table captured in statement mode (whose capture function,
-- repl.capture_stmt, is shared and kicks nobody): repl.kick_code's kick once
-- per statement. A table with the row capture trigger kicks from its
-- capture function: a kick trigger left on it by an older version gets an
-- empty body here, until add-triggers (or validate --fix) takes it off.
-- Regenerated whenever the consumers change (repl.refresh_kicks) and on
-- every install (an upgrade's new body or window takes effect).
CREATE OR REPLACE FUNCTION repl.make_kick(p_rel regclass, p_window_ms integer) RETURNS text
LANGUAGE plpgsql AS $gen$
DECLARE
  v_name   text := 'kick_' || p_rel::oid;
  v_kick   record;
BEGIN
  IF p_window_ms IS NULL OR p_window_ms < 0 THEN
    RAISE EXCEPTION 'repl.make_kick: the kick window must be 0 ms or more, not %', coalesce(p_window_ms::text, 'NULL');
  END IF;
  PERFORM pg_advisory_xact_lock(1130459251, 3); -- FIXED_LOCK_CLASS, generatedFunctions (orchestrator/src/db/advisory-locks.ts)
  SELECT * INTO v_kick FROM repl.kick_code(p_rel, p_window_ms);
  IF v_kick.due = '' OR EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p_rel AND tgname = 'capra_capture_row') THEN
    -- Only cron-kicked jobs (or none) capture this table, or its capture function kicks: nothing to send.
    EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, 'BEGIN RETURN NULL; END');
    RETURN v_name;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, format(
$b$BEGIN
  -- Every statement checks the clock: a flag to check it once per
  -- transaction and table (set_config) cost writers more than it saved
  -- (npm run bench:capture), and a transaction's repeated NOTIFYs of one
  -- channel are sent once at its commit.
  IF current_setting('capra.origin', true) <> '' THEN
    IF current_setting('capra.cascade', true) = 'on' THEN
%1$s
    END IF;%2$s
  END IF;
  RETURN NULL;
END$b$, v_kick.other_jobs, v_kick.due));
  RETURN v_name;
END
$gen$;

-- repl.refresh_kicks(window_ms integer) -> void
-- Writes the kicks of every captured table again, after consumers or their
-- kick settings changed, and on every install, with the kick window
-- `window_ms`: each kick trigger's function (repl.make_kick), and each row
-- capture function (repl.make_capture, with the key in its comment; a
-- function made before the key was kept there gets the key its table is
-- registered with, when all its consumers agree on it, and is otherwise left
-- for capra validate to name).
CREATE OR REPLACE FUNCTION repl.refresh_kicks(p_window_ms integer) RETURNS void
LANGUAGE sql AS $$
  SELECT count(repl.make_kick(tgrelid, p_window_ms)) FROM pg_trigger WHERE tgname = 'capra_kick';
  SELECT count(repl.make_capture(f.relid::regclass, f.keys, p_window_ms))
    FROM (SELECT r.relid,
                 coalesce(CASE WHEN left(obj_description(p.oid, 'pg_proc'), 1) = '['
                               THEN ARRAY(SELECT jsonb_array_elements_text(obj_description(p.oid, 'pg_proc')::jsonb)) END,
                          (SELECT min(t.key_cols) FROM repl.consumer_table t WHERE t.relid = r.relid
                            HAVING count(DISTINCT t.key_cols) = 1)) AS keys
            FROM pg_proc p
           CROSS JOIN LATERAL (SELECT CASE WHEN p.proname ~ '^capture_[0-9]+$' THEN substr(p.proname, 9)::oid END AS relid) r
           WHERE p.pronamespace = 'repl'::regnamespace AND r.relid IS NOT NULL
             AND EXISTS (SELECT FROM pg_class c WHERE c.oid = r.relid)) f
   WHERE f.keys IS NOT NULL;
$$;
