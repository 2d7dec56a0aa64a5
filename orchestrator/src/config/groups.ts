import { z } from 'zod';
import { errorMessage } from '../util/errors.js';
import { splitQualified } from '../util/qualified-name.js';
import { expecting, isObj, list, orWhenUnset, says, settings, show, text } from './schema-kit.js';

// Named groups of tables and of databases (the `groups` key). A sync names a
// group as `@name` in tables.include / tables.exclude (a table group) or in
// sources / targets (a database group); the config as the code reads it has
// each reference replaced by the group's members, in order. Clones name them
// by relgroup / dbgroup (install publishes them into the metadata database).

/** The groups as the file writes them, read before validation so that a sync's references can be checked and expanded. */
export interface RawGroups {
  tables: Record<string, unknown>;
  databases: Record<string, unknown>;
}

export function rawGroups(raw: unknown): RawGroups {
  const g = isObj(raw) && isObj(raw.groups) ? raw.groups : {};
  return { tables: isObj(g.tables) ? g.tables : {}, databases: isObj(g.databases) ? g.databases : {} };
}

/** `@name`: a reference to a group. */
export function groupRef(entry: string): string | null {
  return entry.startsWith('@') ? entry.slice(1) : null;
}

type Kind = keyof RawGroups;
const kindWord: Record<Kind, string> = { tables: 'table', databases: 'database' };

/** "unknown table group "x" (table groups: a, b)", or null when `name` is one. */
export function unknownGroup(groups: RawGroups, kind: Kind, name: string): string | null {
  if (Object.hasOwn(groups[kind], name)) return null;
  const names = Object.keys(groups[kind]);
  return `unknown ${kindWord[kind]} group ${show(name)} (${kindWord[kind]} groups: ${names.length ? names.join(', ') : 'none'})`;
}

/** The members of a group as the file lists them (what is not a list of strings counts as none: the groups key reports it). */
export function members(groups: RawGroups, kind: Kind, name: string): string[] {
  const m = groups[kind][name];
  return Array.isArray(m) ? m.filter((x): x is string => typeof x === 'string') : [];
}

/** A list with every `@name` replaced by that group's members. */
export function expandRefs(groups: RawGroups, kind: Kind, entries: readonly string[]): string[] {
  return entries.flatMap((e) => {
    const name = groupRef(e);
    return name === null ? [e] : members(groups, kind, name);
  });
}

/** An include/exclude entry: a schema, schema.table, or `@group` naming a table group. */
export function selectorEntry(groups: RawGroups) {
  return text.superRefine((s, payload) => {
    const name = groupRef(s);
    const problem = name === null ? null : unknownGroup(groups, 'tables', name);
    if (problem) payload.addIssue({ code: 'custom', message: problem, input: s });
  });
}

/** A table in a group: schema.table (SQL quoting for odd names), so that it means the same in include and in a clone. */
const groupTable = text.superRefine((s, payload) => {
  let parts: string[];
  try {
    parts = splitQualified(s);
  } catch (err) {
    payload.addIssue({ code: 'custom', message: `bad table name: ${errorMessage(err)}`, input: s });
    return;
  }
  if (parts.length !== 2) payload.addIssue({ code: 'custom', message: `expected schema.table (a group lists tables), got ${show(s)}`, input: s });
});

/** A group: a non-empty list, each member once. */
function group<T extends z.ZodType<string>>(member: T, what: string) {
  return list(member).superRefine((items, payload) => {
    if (items.length === 0) payload.addIssue({ code: 'custom', message: `a group needs at least one ${what}`, input: items });
    const seen = new Set<string>();
    for (const [i, item] of items.entries()) {
      if (seen.has(item)) payload.addIssue({ code: 'custom', path: [i], message: `${what} ${item} is listed twice`, input: item });
      seen.add(item);
    }
  });
}

const groupName = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'a group name is a letter followed by letters, digits, _ or -');

/** The `groups` key: `tables: { name: [schema.table, ...] }`, `databases: { name: [db, ...] }`. */
export function groupsSchema(database: z.ZodType<string>) {
  const byName = <T extends z.ZodType>(g: T, what: string) =>
    z.record(
      groupName,
      g,
      says(() => `expected a map of group name to list of ${what}`),
    );
  return orWhenUnset(
    settings(
      {
        tables: orWhenUnset(byName(group(groupTable, 'table'), 'tables'), () => ({})),
        databases: orWhenUnset(byName(group(database, 'database'), 'databases'), () => ({})),
      },
      expecting('a map with tables and/or databases'),
    ),
    () => ({ tables: {}, databases: {} }),
  );
}
