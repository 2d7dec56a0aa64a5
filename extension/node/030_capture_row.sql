-- repl.capture_row() -> trigger
-- Row-level AFTER trigger for INSERT, UPDATE, DELETE; the alternative to
-- repl.capture_stmt(), kept so the two can be measured against each other
-- (`npm run bench`). TG_ARGV holds the key column names. TRUNCATE is still
-- captured by a statement-level repl.capture_stmt() trigger.
CREATE OR REPLACE FUNCTION repl.capture_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_origin text := repl.applier_origin();
  v_new    jsonb;
  v_old    jsonb;
  v_row    jsonb;
  k        text;
BEGIN
  IF repl.skip_capture() THEN
    RETURN NULL;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    v_row := to_jsonb(NEW);
    v_new := '{}';
    FOREACH k IN ARRAY TG_ARGV LOOP
      v_new := v_new || jsonb_build_object(k, v_row -> k);
    END LOOP;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    v_row := to_jsonb(OLD);
    v_old := '{}';
    FOREACH k IN ARRAY TG_ARGV LOOP
      v_old := v_old || jsonb_build_object(k, v_row -> k);
    END LOOP;
  END IF;
  IF v_new IS NOT NULL THEN
    INSERT INTO repl.delta (relid, op, pk, origin)
    VALUES (TG_RELID, left(TG_OP, 1)::"char", v_new, v_origin);
  END IF;
  IF v_old IS NOT NULL AND v_old IS DISTINCT FROM v_new THEN
    INSERT INTO repl.delta (relid, op, pk, origin)
    VALUES (TG_RELID, left(TG_OP, 1)::"char", v_old, v_origin);
  END IF;
  RETURN NULL;
END
$$;
