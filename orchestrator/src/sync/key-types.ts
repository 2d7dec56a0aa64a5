import type { TableMeta } from './table-meta.js';

/**
 * Key types whose value in the delta's jsonb key is read by `->>` and a
 * cast: to_jsonb writes them as a JSON string or number whose text is the
 * type's own input form, so this reads what jsonb_to_record would, in about
 * half the time (a lateral function call per delta row cost 50 ms of a
 * 120 ms pass over 100,000 changes). Arrays, composites and json are
 * written as JSON structures and need jsonb_to_record.
 */
export const TEXT_READ_TYPES = /^(smallint|integer|bigint|text|uuid|character varying(\(\d+\))?)$/;

/** The cast of a key read as text (see TEXT_READ_TYPES): a varchar's length is left out, as the value came from the column. */
export const castOf = (type: string): string => type.replace(/\(\d+\)$/, '');

/** Whether every key column of `t` is of a type read as text (TEXT_READ_TYPES). */
export const keyReadAsText = (t: TableMeta): boolean => t.keyTypes.every((type) => TEXT_READ_TYPES.test(type));

/**
 * Whether the delta's jsonb keys of `t`, as the capture trigger wrote them,
 * are already in the one form that reading them into the key's types and
 * back (to_jsonb of a jsonb_to_record) gives, so keys from several sources
 * compare as they are: every key column is of a type read as text, whose
 * JSON has one spelling (an integer's digits, a string, a uuid in lower
 * case), and jsonb orders an object's fields itself. A timestamp's JSON
 * follows the writer's TimeZone, a numeric's its scale: those are read into
 * their types first. A whole-row identity is left out: its key is every
 * column.
 */
export const keyTextCanonical = (t: TableMeta): boolean => !t.shape?.fullRow && keyReadAsText(t);
