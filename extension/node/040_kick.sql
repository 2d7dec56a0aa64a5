-- repl.kick() -> trigger
-- Statement-level AFTER trigger: NOTIFY each job that captures this table and
-- asked for notify kicks, on its own channel capra_<job>, so jobs sharing a
-- node never share a channel. NOTIFY takes a database-wide lock at commit;
-- jobs on cron kicks set consumer.kick = false and pay nothing here but the
-- lookup. An applier's own writes kick only other (downstream) jobs.
CREATE OR REPLACE FUNCTION repl.kick() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_origin text := repl.applier_origin();
  v_job    text;
BEGIN
  IF repl.skip_capture() THEN
    RETURN NULL;
  END IF;
  FOR v_job IN
    SELECT DISTINCT c.job
      FROM repl.consumer c
      JOIN repl.consumer_table t USING (job, sync)
     WHERE t.relid = TG_RELID
       AND c.kick
       AND c.job IS DISTINCT FROM v_origin
  LOOP
    PERFORM pg_notify('capra_' || v_job, '');
  END LOOP;
  RETURN NULL;
END
$$;
