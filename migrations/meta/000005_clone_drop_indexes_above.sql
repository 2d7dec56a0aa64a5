-- A clone's index threshold: with drop_indexes, only the indexes larger than
-- this many bytes are dropped for the copy; NULL keeps the original meaning,
-- every index that backs no constraint.
ALTER TABLE repl.clone ADD COLUMN drop_indexes_above bigint CHECK (drop_indexes_above >= 0);
