-- The SQL API for clones (see migrations/meta/000002_clone.sql). Every bad
-- argument is an error in the calling session, naming what is wrong; what
-- cannot be checked here (a table missing on a node) fails the clone, and
-- repl.clone.error says why.

-- 'a:source,b:target' -> [{"db": "a", "role": "source"}, ...], checked against repl.node.
CREATE OR REPLACE FUNCTION repl.clone_parse_dbs(spec text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  item  text;
  db    text;
  role  text;
  seen  text[] := '{}';
  out   jsonb := '[]';
BEGIN
  FOREACH item IN ARRAY string_to_array(spec, ',') LOOP
    item := btrim(item);
    IF item = '' THEN CONTINUE; END IF;
    IF position(':' IN item) = 0 THEN
      RAISE EXCEPTION 'repl.clone: dbs entry "%" needs a role: name:source or name:target', item USING ERRCODE = '22023';
    END IF;
    db := btrim(split_part(item, ':', 1));
    role := lower(btrim(substr(item, position(':' IN item) + 1)));
    IF role NOT IN ('source', 'target') THEN
      RAISE EXCEPTION 'repl.clone: dbs entry "%": role must be source or target, not "%"', item, role USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM repl.node n WHERE n.name = db) THEN
      RAISE EXCEPTION 'repl.clone: unknown database "%" (databases: %)', db,
        (SELECT string_agg(n.name, ', ' ORDER BY n.name) FROM repl.node n) USING ERRCODE = '22023';
    END IF;
    IF db = ANY (seen) THEN
      RAISE EXCEPTION 'repl.clone: database "%" is named twice in dbs', db USING ERRCODE = '22023';
    END IF;
    seen := seen || db;
    out := out || jsonb_build_array(jsonb_build_object('db', db, 'role', role));
  END LOOP;
  RETURN out;
END $$;

-- The members of a group of the config, as repl.clone's tables and dbs take
-- them: for a relgroup its tables ('"schema"."table"'), for a dbgroup its
-- databases with their roles, the first the source and the others targets
-- ('a:source', 'b:target', ...); in the config's order. A name that is no
-- group is refused, listing the groups there are.
CREATE OR REPLACE FUNCTION repl.clone_group(kind text, grp text) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  out text[];
BEGIN
  IF kind = 'relgroup' THEN
    SELECT array_agg(format('%I.%I', g.schema_name, g.table_name) ORDER BY g.position) INTO out
      FROM repl.table_group g WHERE g.name = grp;
  ELSE
    SELECT array_agg(g.node || CASE WHEN g.position = 0 THEN ':source' ELSE ':target' END ORDER BY g.position) INTO out
      FROM repl.db_group g WHERE g.name = grp;
  END IF;
  IF out IS NULL THEN
    RAISE EXCEPTION 'repl.clone: unknown % "%" (% groups: %)', kind, grp, CASE kind WHEN 'relgroup' THEN 'table' ELSE 'database' END,
      coalesce(CASE kind
                 WHEN 'relgroup' THEN (SELECT string_agg(DISTINCT g.name, ', ') FROM repl.table_group g)
                 ELSE (SELECT string_agg(DISTINCT g.name, ', ') FROM repl.db_group g)
               END, 'none') USING ERRCODE = '22023';
  END IF;
  RETURN out;
END $$;

-- repl.clone's earlier signatures (before drop_indexes_above, relgroup and
-- dbgroup): CREATE OR REPLACE with more arguments makes a second function
-- beside the old one, and a call by name would then be ambiguous.
DROP FUNCTION IF EXISTS repl.clone(text, text[], text, interval, boolean, boolean);
DROP FUNCTION IF EXISTS repl.clone(text, text[], text, interval, boolean, boolean, text);
DROP FUNCTION IF EXISTS repl.clone(text, text[], text, interval, boolean, boolean, text, text);

-- Queues a clone and wakes the daemon; returns its id. drop_indexes_above
-- (a size as pg_size_bytes reads it: '100MB') drops only the indexes larger
-- than that, and implies drop_indexes. relgroup and dbgroup name groups of
-- the config, in place of tables and dbs.
CREATE OR REPLACE FUNCTION repl.clone(
  sync         text     DEFAULT NULL,
  tables       text[]   DEFAULT NULL,
  dbs          text     DEFAULT NULL,
  start        interval DEFAULT '0',
  only_empty   boolean  DEFAULT false,
  drop_indexes boolean  DEFAULT false,
  drop_indexes_above text DEFAULT NULL,
  relgroup     text     DEFAULT NULL,
  dbgroup      text     DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_sync   text     := clone.sync;
  v_tables text[]   := clone.tables;
  v_dbs    text     := clone.dbs;
  roles    jsonb;
  resolved jsonb    := '[]';
  ref      text;
  parts    text[];
  sch      text;
  tbl      text;
  n_src    int;
  new_id   bigint;
  above    bigint;
BEGIN
  IF clone.relgroup IS NOT NULL THEN
    IF v_tables IS NOT NULL THEN
      RAISE EXCEPTION 'repl.clone: give tables or relgroup, not both' USING ERRCODE = '22023';
    END IF;
    v_tables := repl.clone_group('relgroup', clone.relgroup);
  END IF;
  IF clone.dbgroup IS NOT NULL THEN
    IF v_dbs IS NOT NULL THEN
      RAISE EXCEPTION 'repl.clone: give dbs or dbgroup, not both' USING ERRCODE = '22023';
    END IF;
    v_dbs := array_to_string(repl.clone_group('dbgroup', clone.dbgroup), ',');
  END IF;
  IF v_sync IS NULL AND v_tables IS NULL THEN
    RAISE EXCEPTION 'repl.clone: name a sync (sync => ...) or tables and dbs' USING ERRCODE = '22023';
  END IF;
  IF v_sync IS NOT NULL AND NOT EXISTS (SELECT 1 FROM repl.sync s WHERE s.name = v_sync) THEN
    RAISE EXCEPTION 'repl.clone: unknown sync "%" (syncs: %)', v_sync,
      coalesce((SELECT string_agg(s.name, ', ' ORDER BY s.name) FROM repl.sync s), 'none') USING ERRCODE = '22023';
  END IF;
  IF clone.start IS NULL OR clone.start < interval '0' THEN
    RAISE EXCEPTION 'repl.clone: start must be a positive interval, got %', coalesce(clone.start::text, 'NULL') USING ERRCODE = '22023';
  END IF;

  IF clone.drop_indexes_above IS NOT NULL THEN
    BEGIN
      above := pg_size_bytes(clone.drop_indexes_above);
    EXCEPTION WHEN OTHERS THEN
      above := -1;
    END;
    IF above < 0 THEN
      RAISE EXCEPTION 'repl.clone: drop_indexes_above: expected a size such as 100MB, 1GB, 8kB or 0, got "%"', clone.drop_indexes_above USING ERRCODE = '22023';
    END IF;
  END IF;

  IF v_dbs IS NOT NULL THEN
    roles := repl.clone_parse_dbs(v_dbs);
  ELSIF v_sync IS NOT NULL THEN
    SELECT coalesce(jsonb_agg(jsonb_build_object('db', sn.node, 'role', sn.role) ORDER BY sn.role, sn.node), '[]')
      INTO roles FROM repl.sync_node sn WHERE sn.sync = v_sync;
  ELSE
    RAISE EXCEPTION 'repl.clone: tables without a sync need dbs, e.g. dbs => ''a:source,b:target''' USING ERRCODE = '22023';
  END IF;
  SELECT count(*) INTO n_src FROM jsonb_array_elements(roles) e WHERE e->>'role' = 'source';
  IF n_src = 0 THEN
    RAISE EXCEPTION 'repl.clone: dbs names no source (e.g. dbs => ''a:source,b:target'')' USING ERRCODE = '22023';
  END IF;
  IF jsonb_array_length(roles) < 2 THEN
    RAISE EXCEPTION 'repl.clone: nothing receives the copy: dbs needs a target or a second source' USING ERRCODE = '22023';
  END IF;

  IF v_tables IS NULL THEN
    SELECT coalesce(jsonb_agg(jsonb_build_object('schema', st.schema_name, 'table', st.table_name) ORDER BY st.schema_name, st.table_name), '[]')
      INTO resolved FROM repl.sync_table st WHERE st.sync = v_sync;
    IF resolved = '[]' THEN
      RAISE EXCEPTION 'repl.clone: sync "%" has no tables registered yet: run capra add-triggers', v_sync USING ERRCODE = '22023';
    END IF;
  ELSE
    IF cardinality(v_tables) = 0 THEN
      RAISE EXCEPTION 'repl.clone: tables is empty' USING ERRCODE = '22023';
    END IF;
    FOREACH ref IN ARRAY v_tables LOOP
      BEGIN
        parts := parse_ident(ref);
      EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'repl.clone: bad table name "%": %', ref, SQLERRM USING ERRCODE = '22023';
      END;
      IF cardinality(parts) = 1 THEN
        sch := 'public'; tbl := parts[1];
      ELSIF cardinality(parts) = 2 THEN
        sch := parts[1]; tbl := parts[2];
      ELSE
        RAISE EXCEPTION 'repl.clone: bad table name "%": expected table or schema.table', ref USING ERRCODE = '22023';
      END IF;
      IF v_sync IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM repl.sync_table st WHERE st.sync = v_sync AND st.schema_name = sch AND st.table_name = tbl
      ) THEN
        RAISE EXCEPTION 'repl.clone: table %.% is not in sync "%"', quote_ident(sch), quote_ident(tbl), v_sync USING ERRCODE = '22023';
      END IF;
      IF NOT resolved @> jsonb_build_array(jsonb_build_object('schema', sch, 'table', tbl)) THEN
        resolved := resolved || jsonb_build_array(jsonb_build_object('schema', sch, 'table', tbl));
      END IF;
    END LOOP;
  END IF;

  -- The threshold goes with each table, as a sync's copy_indexes may set one per table.
  IF above IS NOT NULL THEN
    SELECT jsonb_agg(e.t || jsonb_build_object('drop_indexes_above', above) ORDER BY e.i) INTO resolved
      FROM jsonb_array_elements(resolved) WITH ORDINALITY AS e(t, i);
  END IF;

  INSERT INTO repl.clone (sync, tables, dbs, only_empty, drop_indexes, startwhen)
  VALUES (v_sync, resolved, roles, coalesce(clone.only_empty, false), coalesce(clone.drop_indexes, false) OR above IS NOT NULL, now() + clone.start)
  RETURNING id INTO new_id;

  -- One row per table and receiving database: targets, and with several sources every source too.
  INSERT INTO repl.clone_table (clone_id, schema_name, table_name, target)
  SELECT new_id, t->>'schema', t->>'table', d->>'db'
    FROM jsonb_array_elements(resolved) t CROSS JOIN jsonb_array_elements(roles) d
   WHERE d->>'role' = 'target' OR n_src > 1;

  PERFORM pg_notify('capra_clone', new_id::text);
  RETURN new_id;
END $$;

-- Cancels a clone: a queued one at once, a running one at its next progress
-- check (its open table copies roll back). Returns the clone's state.
CREATE OR REPLACE FUNCTION repl.clone_cancel(id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  st text;
BEGIN
  SELECT c.state INTO st FROM repl.clone c WHERE c.id = clone_cancel.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'repl.clone_cancel: no clone %', clone_cancel.id USING ERRCODE = '22023';
  END IF;
  IF st = 'queued' THEN
    UPDATE repl.clone c SET state = 'cancelled', ended = now(), error = 'cancelled before it started' WHERE c.id = clone_cancel.id;
    UPDATE repl.clone_table ct SET state = 'cancelled' WHERE ct.clone_id = clone_cancel.id;
    RETURN 'cancelled';
  ELSIF st = 'running' THEN
    UPDATE repl.clone c SET cancel_requested = true WHERE c.id = clone_cancel.id;
    PERFORM pg_notify('capra_clone', clone_cancel.id::text);
    RETURN 'cancelling';
  END IF;
  RAISE EXCEPTION 'repl.clone_cancel: clone % has already ended (%)', clone_cancel.id, st USING ERRCODE = '22023';
END $$;
