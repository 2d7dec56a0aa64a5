-- repl.applier_origin() -> text
-- The job whose applier wrote in this transaction, or NULL for a user's write.
-- The applier marks its session with SET LOCAL capra.origin (a custom GUC any
-- role may set), so capture works without superuser.
-- repl.skip_capture() -> boolean
-- True when this write was made by an applier whose sync does not cascade:
-- nothing is recorded, so the change cannot ping-pong back.
CREATE OR REPLACE FUNCTION repl.applier_origin() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT nullif(current_setting('capra.origin', true), '')
$$;

CREATE OR REPLACE FUNCTION repl.skip_capture() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT repl.applier_origin() IS NOT NULL
     AND coalesce(current_setting('capra.cascade', true), '') <> 'on'
$$;
