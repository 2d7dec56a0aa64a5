-- repl.capture_stmt() -> trigger
-- Statement-level AFTER trigger for INSERT, UPDATE, DELETE (with transition
-- tables named capra_new / capra_old) and TRUNCATE. TG_ARGV holds the key
-- column names. Writes one repl.delta row per changed key: for UPDATE both the
-- old and the new key, so a primary-key change deletes the old row downstream.
CREATE OR REPLACE FUNCTION repl.capture_stmt() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_origin text := repl.applier_origin();
  v_key    text;
BEGIN
  IF repl.skip_capture() THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO repl.delta (relid, op, pk, origin) VALUES (TG_RELID, 'T', NULL, v_origin);
    RETURN NULL;
  END IF;

  SELECT 'jsonb_build_object(' || string_agg(format('%L, r.%I', k, k), ', ') || ')'
    INTO v_key
    FROM unnest(TG_ARGV) AS k;

  IF TG_OP = 'INSERT' THEN
    EXECUTE 'INSERT INTO repl.delta (relid, op, pk, origin) SELECT $1, ''I'', '
            || v_key || ', $2 FROM capra_new r'
      USING TG_RELID, v_origin;
  ELSIF TG_OP = 'DELETE' THEN
    EXECUTE 'INSERT INTO repl.delta (relid, op, pk, origin) SELECT $1, ''D'', '
            || v_key || ', $2 FROM capra_old r'
      USING TG_RELID, v_origin;
  ELSE
    -- UNION, not UNION ALL: an update that keeps the key records it once.
    EXECUTE 'INSERT INTO repl.delta (relid, op, pk, origin) SELECT $1, ''U'', k, $2 FROM ('
            || 'SELECT ' || v_key || ' AS k FROM capra_new r UNION '
            || 'SELECT ' || v_key || ' FROM capra_old r) u'
      USING TG_RELID, v_origin;
  END IF;
  RETURN NULL;
END
$$;
