import { z } from 'zod';

// Zod building blocks for a settings file whose errors each name one key
// path and say what was expected and what was found, in one line. Zod's own
// messages ("Invalid input: expected number") name no value; every schema
// here says its own, computed from the value it was given.

type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as a message shows it: JSON, cut at 60 characters; "nothing" when it is missing. */
export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** A message computed from the offending value. */
export type Says = (input: unknown) => string;

/** `expected WHAT, got VALUE`. */
export function expecting(what: string): Says {
  return (v) => `expected ${what}, got ${show(v)}`;
}

/** A schema's or a check's `error` parameter: the message computed from the offending value. */
export function says(text: Says): { error: (issue: { input?: unknown }) => string } {
  return { error: (issue) => text(issue.input) };
}

export const expected = (what: string): ReturnType<typeof says> => says(expecting(what));

/** A string with something in it; the refusal stops there, so later checks see only such strings. */
export const text = z.string(expected('a non-empty string')).refine((s) => s.trim() !== '', { ...expected('a non-empty string'), abort: true });

/** A list; left out or left empty (`key:` alone in YAML) it is the empty list. */
export function list<T extends z.ZodType>(item: T, params = expected('a list')) {
  return orWhenUnset(z.array(item, params), () => []);
}

/**
 * The schema's value, or `dflt()` when the key is left out or has no value
 * (YAML's null). Zod's `.default()` covers only a left-out key.
 */
export function orWhenUnset<T extends z.ZodType>(schema: T, dflt: () => z.output<T>) {
  return z.codec(schema.nullish(), z.custom<z.output<T>>(), {
    decode: (v) => (v ?? dflt()) as z.output<T>,
    encode: (v) => v as z.output<typeof schema>,
  });
}

/** A map of fixed keys: any other key is refused, naming the keys there are. */
export function fixedKeys<S extends z.core.$ZodLooseShape>(shape: S, notAMap: Says) {
  const keys = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown key (expected one of: ${keys.join(', ')})` : notAMap(issue.input)),
  });
}

type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
/** An object's keys in camelCase: `copy_data` -> `copyData`. */
export type CamelKeys<T> = { [K in keyof T as K extends string ? Camel<K> : K]: T[K] };

const camel = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** A check across several keys of one map, run once the keys it `reads` are each valid. */
export interface AcrossKeys<S extends z.core.$ZodLooseShape> {
  reads: readonly (keyof S & string)[];
  check: (v: z.output<z.ZodObject<S>>, payload: z.core.$RefinementCtx) => void;
}

/**
 * Settings: a map of fixed keys, snake_case in the file and camelCase in the
 * code that reads them. Encoding back keeps the file's keys, in the schema's
 * order, and drops whatever the code added (a sync's name, the file's path).
 */
export function settings<S extends z.core.$ZodLooseShape>(shape: S, notAMap: Says, across?: AcrossKeys<S>) {
  let map = fixedKeys(shape, notAMap);
  if (across) {
    // Zod would run it only once the whole map is valid; run as soon as the
    // keys it reads are, its problem comes before those of later keys.
    const valid = (payload: z.core.ParsePayload): boolean =>
      isObj(payload.value) && !payload.issues.some((i) => across.reads.includes(i.path?.[0] as keyof S & string));
    map = map.superRefine((v, payload) => across.check(v as z.output<z.ZodObject<S>>, payload), { when: valid });
  }
  type File = z.output<typeof map>;
  const keys = Object.keys(shape);
  return z.codec(map, z.custom<CamelKeys<File>>(), {
    decode: (v) => Object.fromEntries(Object.entries(v).map(([k, x]) => [camel(k), x])) as CamelKeys<File>,
    encode: (v) => Object.fromEntries(keys.map((k) => [k, (v as Obj)[camel(k)]])) as File,
  });
}

/** The forms a value written several ways may take, for walking the schema (see recordAt). */
const formsOf = new WeakMap<z.core.$ZodType, readonly z.core.$ZodType[]>();

/**
 * A value the file may write in several forms (a strategy name, a list of
 * databases, a map), each form a schema that yields the value the code
 * reads. The form is chosen by what the value is, as a person reads it, so
 * an error speaks of the form that was meant and not of every form at once
 * as a union's would. `encode` writes the value back in one form.
 */
export function byForm<const F extends readonly z.ZodType[]>(forms: F, choose: (v: unknown) => F[number], encode: (v: z.output<F[number]>) => unknown) {
  type T = z.output<F[number]>;
  const schema = z.codec(z.unknown(), z.custom<T>(), {
    decode: (v, payload) => {
      const r = choose(v).safeParse(v);
      if (r.success) return r.data as T;
      // Passed on as they are: each keeps its code (unknown keys), path and message.
      payload.issues.push(...(r.error.issues as unknown as typeof payload.issues));
      return z.NEVER;
    },
    encode: (v) => encode(v as T),
  });
  formsOf.set(schema, forms);
  return schema;
}

type Part = string | number;

/** The schemas a value is checked by, wrappers taken off; a value written several ways has one per form. */
function cores(schema: z.core.$ZodType): z.core.$ZodType[] {
  const forms = formsOf.get(schema);
  if (forms) return forms.flatMap(cores);
  const def = schema._zod.def as z.core.$ZodTypeDef & Record<string, z.core.$ZodType>;
  switch (def.type) {
    case 'pipe':
      return cores(def.in!);
    case 'optional':
    case 'nullable':
    case 'default':
      return cores(def.innerType!);
    default:
      return [schema];
  }
}

/**
 * The schema of `part` inside a map or list, and the part's place among its
 * siblings: a fixed key's position in the schema, a list item's index; a
 * named entry (a record's) has none of its own and keeps the file's order.
 */
function step(schema: z.core.$ZodType, part: PropertyKey): { place?: number; schema: z.core.$ZodType } | undefined {
  for (const core of cores(schema)) {
    const def = core._zod.def as z.core.$ZodTypeDef & Record<string, unknown>;
    const shape = def.shape as Record<string, z.core.$ZodType> | undefined;
    if (def.type === 'object' && typeof part === 'string' && shape && Object.hasOwn(shape, part))
      return { place: Object.keys(shape).indexOf(part), schema: shape[part]! };
    if (def.type === 'record' && typeof part === 'string') return { schema: def.valueType as z.core.$ZodType };
    if (def.type === 'array' && typeof part === 'number') return { place: part, schema: def.element as z.core.$ZodType };
  }
  return undefined;
}

/** True when `path` in `schema` is a map whose keys the user names (a record), in any of its forms. */
export function recordAt(schema: z.core.$ZodType, path: readonly Part[]): boolean {
  let s: z.core.$ZodType | undefined = schema;
  for (const part of path) s = s && step(s, part)?.schema;
  return !!s && cores(s).some((c) => c._zod.def.type === 'record');
}

/** A key path as messages write it: `syncs.shop.sources[0]`, `(top level)` for the whole file. */
function keyOf(path: readonly PropertyKey[]): string {
  let s = '';
  for (const part of path) s += typeof part === 'number' ? `[${part}]` : `${s ? '.' : ''}${String(part)}`;
  return s || '(top level)';
}

/**
 * Where each issue's path comes in the schema's order, part by part. Zod
 * checks a record's entries in the file's order, so an entry's place is
 * where its first issue comes.
 */
function places(schema: z.core.$ZodType, issues: readonly z.core.$ZodIssue[]): number[][] {
  const entryPlace = new Map<string, number>();
  return issues.map((issue) => {
    const out: number[] = [];
    let s: z.core.$ZodType | undefined = schema;
    for (const [i, part] of issue.path.entries()) {
      const next: ReturnType<typeof step> = s && step(s, part);
      const entry = JSON.stringify(issue.path.slice(0, i + 1).map(String));
      if (next && next.place === undefined && !entryPlace.has(entry)) entryPlace.set(entry, entryPlace.size);
      out.push(next?.place ?? entryPlace.get(entry) ?? Number.MAX_SAFE_INTEGER);
      s = next?.schema;
    }
    return out;
  });
}

function comparePlaces(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * The one problem to report, as KEY and message: the first in the schema's
 * order of keys, a map's own problems (an unknown key, which explains what
 * follows from it) before those inside it. Zod finds every problem but lists
 * a map's unknown keys after its known ones, and a check across keys (that
 * runs once each key is valid) after both.
 */
export function firstProblem(schema: z.core.$ZodType, issues: readonly z.core.$ZodIssue[]): { key: string; message: string } {
  const at = places(schema, issues);
  const ranked = issues.map((issue, i) => ({ issue, places: at[i]! }));
  const first = ranked.sort((a, b) => comparePlaces(a.places, b.places))[0]!.issue; // sort is stable: zod's order among equals
  if (first.code === 'unrecognized_keys') return { key: keyOf([...first.path, first.keys[0]!]), message: first.message };
  // A map key refused by its record's key schema: the key schema's own message.
  if (first.code === 'invalid_key') return { key: keyOf(first.path), message: first.issues[0]?.message ?? first.message };
  return { key: keyOf(first.path), message: first.message };
}
