-- Per-table trigger functions, generated with the table's key columns and
-- the jobs to notify written into static SQL: plans are cached and nothing
-- is looked up or built per write, which makes capture several times cheaper
-- for single-row writes than a generic function that reads TG_ARGV and runs
-- dynamic SQL (figures: `npm run bench`). Named by the table's oid, so a
-- rename changes nothing; bodies are passed as quoted literals, so no column
-- name can break out of them.

-- repl.make_capture(rel regclass, keys text[]) -> text
-- Creates or replaces repl.capture_<oid>(), the row-level AFTER INSERT,
-- UPDATE, DELETE trigger function of `rel`: one repl.delta row per change,
-- two for an update that changes the key (old and new key). Returns its name.
-- It also serves the statement-level AFTER TRUNCATE trigger (one 'T' row), so
-- every trigger on the table depends on a function of ours only: a role that
-- does not own the table (and so may not DROP TRIGGER) removes them all by
-- DROP FUNCTION ... CASCADE.
-- The rows carry rel's oid, not TG_RELID: on a partitioned table the trigger
-- runs as a clone on each partition, and the change belongs to the parent.
CREATE OR REPLACE FUNCTION repl.make_capture(p_rel regclass, p_keys text[]) RETURNS text
LANGUAGE plpgsql AS $gen$
DECLARE
  v_name    text := 'capture_' || p_rel::oid;
  v_new     text;
  v_old     text;
  v_changed text;
  v_body    text;
BEGIN
  IF coalesce(array_length(p_keys, 1), 0) = 0 THEN
    RAISE EXCEPTION 'repl.make_capture: % has no key columns', p_rel;
  END IF;
  SELECT 'jsonb_build_object(' || string_agg(format('%L, NEW.%I', k, k), ', ' ORDER BY o) || ')',
         'jsonb_build_object(' || string_agg(format('%L, OLD.%I', k, k), ', ' ORDER BY o) || ')',
         string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', k, k), ' OR ' ORDER BY o)
    INTO v_new, v_old, v_changed
    FROM unnest(p_keys) WITH ORDINALITY AS u(k, o);
  -- PL/pgSQL prepares each expression (an IF's condition, an assignment)
  -- anew in every transaction that evaluates it, and a writer's short
  -- transaction calls the function once or twice: so the body evaluates as
  -- few as a write needs. An update (the commonest write) is tested first,
  -- and the origin is read where the row is written, not kept in a variable.
  -- With this body and kick body, and migration 000005, writers kept 0.74 of
  -- their TPS with no triggers, against 0.71 before (pgbench TPC-B-like,
  -- 4 clients, pinned, 5 interleaved rounds; 2026-12-06).
  v_body := format(
$b$BEGIN
  IF current_setting('capra.origin', true) <> '' AND current_setting('capra.cascade', true) IS DISTINCT FROM 'on' THEN
    RETURN NULL;
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
END$b$, v_new, v_old, v_changed, p_rel::oid);
  -- CREATE OR REPLACE of one function from two sessions at once fails; serialise.
  PERFORM pg_advisory_xact_lock(1130459251, 3); -- FIXED_LOCK_CLASS, generatedFunctions (orchestrator/src/db/advisory-locks.ts)
  EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, v_body);
  RETURN v_name;
END
$gen$;

-- Before the kick window became a parameter; a second signature beside the
-- new one would make an unqualified DROP FUNCTION of the name ambiguous.
DROP FUNCTION IF EXISTS repl.make_kick(regclass);
DROP FUNCTION IF EXISTS repl.refresh_kicks();

-- repl.make_kick(rel regclass, window_ms integer) -> text
-- Creates or replaces repl.kick_<oid>(), the statement-level trigger
-- function that NOTIFYs each job capturing `rel` with kick enabled, on its own
-- channel capra_<job> (jobs sharing a node never share a channel); jobs on
-- cron kicks are left out.
-- NOTIFY serialises the commits of every notifying transaction on one
-- database-wide lock, held through the commit's WAL flush: with one kick per
-- commit, 64 busy clients lost most of their throughput. So a user's write
-- kicks the table at most once per `window_ms` by all sessions together: the
-- time of its last kick is kept in the sequence repl.kick_clock_<oid> (read
-- and set outside any transaction's visibility, with no row lock to wait for).
-- The window and the daemon's linger that picks up the skipped kicks' commits
-- are one setting, orchestrator/src/db/kick-timing.ts, which every caller
-- passes in. Writers need SELECT and UPDATE on that sequence; it is granted
-- to PUBLIC like INSERT on repl.delta.
-- An applier's own write (cascade) kicks only the other jobs, and so neither
-- reads nor sets the clock: a kick that its own job never got must not stand
-- for a user's write that follows within the window. Appliers commit once
-- per run, so their kicks need no limit.
-- Regenerated whenever the consumers change (repl.refresh_kicks) and on
-- every install (an upgrade's new body or window takes effect).
CREATE OR REPLACE FUNCTION repl.make_kick(p_rel regclass, p_window_ms integer) RETURNS text
LANGUAGE plpgsql AS $gen$
DECLARE
  v_name   text := 'kick_' || p_rel::oid;
  v_clock  text := 'kick_clock_' || p_rel::oid;
  v_all    text;
  v_others text;
BEGIN
  IF p_window_ms IS NULL OR p_window_ms < 0 THEN
    RAISE EXCEPTION 'repl.make_kick: the kick window must be 0 ms or more, not %', coalesce(p_window_ms::text, 'NULL');
  END IF;
  SELECT coalesce(string_agg(format('    PERFORM pg_notify(%L, '''');', 'capra_' || j.job), E'\n' ORDER BY j.job), ''),
         coalesce(string_agg(format('    IF current_setting(''capra.origin'', true) IS DISTINCT FROM %L THEN PERFORM pg_notify(%L, ''''); END IF;', j.job, 'capra_' || j.job), E'\n' ORDER BY j.job), '')
    INTO v_all, v_others
    FROM (SELECT DISTINCT c.job
            FROM repl.consumer c JOIN repl.consumer_table t USING (job, sync)
           WHERE t.relid = p_rel AND c.kick) j;
  PERFORM pg_advisory_xact_lock(1130459251, 3); -- FIXED_LOCK_CLASS, generatedFunctions (orchestrator/src/db/advisory-locks.ts)
  EXECUTE format('CREATE SEQUENCE IF NOT EXISTS repl.%I MINVALUE 0 START 0', v_clock);
  EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE repl.%I TO PUBLIC', v_clock);
  IF v_all = '' THEN
    -- Only cron-kicked jobs (or none) capture this table: nothing to send.
    EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, 'BEGIN RETURN NULL; END');
    RETURN v_name;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION repl.%I() RETURNS trigger LANGUAGE plpgsql AS %L', v_name, format(
$b$BEGIN
  -- Every statement checks the clock: a flag to check it once per
  -- transaction and table (set_config) cost writers more than it saved
  -- (npm run bench:capture), and a transaction's repeated NOTIFYs of one
  -- channel are sent once at its commit. A user's write evaluates two
  -- expressions, as make_capture explains.
  IF coalesce(current_setting('capra.origin', true), '') = '' THEN
    IF (extract(epoch FROM clock_timestamp()) * 1000)::bigint - coalesce(pg_sequence_last_value('repl.%1$I'::regclass), 0) >= %5$s THEN
      PERFORM setval('repl.%1$I'::regclass, (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
%2$s
    END IF;
  ELSIF current_setting('capra.cascade', true) = 'on' THEN
%3$s
  END IF;
  RETURN NULL;
END$b$, v_clock, v_all, v_others, p_rel::oid, p_window_ms));
  RETURN v_name;
END
$gen$;

-- repl.refresh_kicks(window_ms integer) -> void
-- Regenerates the kick function of every table that has a kick trigger, after
-- consumers or their kick settings changed, with the kick window `window_ms`.
CREATE OR REPLACE FUNCTION repl.refresh_kicks(p_window_ms integer) RETURNS void
LANGUAGE sql AS $$
  SELECT count(repl.make_kick(tgrelid, p_window_ms)) FROM pg_trigger WHERE tgname = 'capra_kick';
$$;

-- repl.refresh_captures() -> void
-- Regenerates the row capture function of every table registered for
-- capture, with the key it is registered with, so that an upgrade's new body
-- takes effect (install runs it, as it runs repl.refresh_kicks). A table whose
-- consumers disagree on its key is left as it is: capra validate names it.
CREATE OR REPLACE FUNCTION repl.refresh_captures() RETURNS void
LANGUAGE sql AS $$
  SELECT count(repl.make_capture(k.relid::regclass, k.key_cols))
    FROM (SELECT t.relid, min(t.key_cols) AS key_cols
            FROM repl.consumer_table t
           WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid)
             AND EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'repl'::regnamespace AND p.proname = 'capture_' || t.relid)
           GROUP BY t.relid
          HAVING count(DISTINCT t.key_cols) = 1) k;
$$;
