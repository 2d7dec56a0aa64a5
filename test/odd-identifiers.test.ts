// Trap 8: every statement quotes identifiers. Schemas, tables, columns, key
// columns and index names with mixed case, spaces, quotes, dots, reserved
// words and SQL injection attempts replicate like any other, selected by
// name (quoted selector syntax) and by whole schema; the job and sync names
// are as odd as the config allows. Nothing is ever executed from a name.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { ROW_TRIGGERS, STATEMENT_TRIGGERS, defaultCaptureMode } from '../orchestrator/src/triggers/ddl.js';
import { quoteIdent } from '../orchestrator/src/db/ident.js';
import { sql, testClusters } from './harness/db.js';
import { type Job, digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const { clusters } = testClusters();
const [c1, c2, c3] = clusters;

interface OddTable {
  schema: string;
  name: string;
  /** Column definitions, SQL. */
  cols: string;
  /** Key columns (unquoted names), for the digest's order. */
  key: string[];
}

const MY = 'My Schema';
const WEIRD = 'we"ird.schema';
const INJECT = 'x"; DROP TABLE victims; --';
const INJECT_COL = `'); DROP TABLE victims; --`;

const tables: OddTable[] = [
  { schema: MY, name: 'Mixed Case', cols: `("Order" int PRIMARY KEY, """quoted""" text, "with space" text, "user" text)`, key: ['Order'] },
  { schema: MY, name: 'has space', cols: `("Key Col" text PRIMARY KEY, "select" int, "it's" text)`, key: ['Key Col'] },
  {
    schema: MY,
    name: 'quote"inside',
    cols: `("a""b" int, "Order" text, "user" text, "100%" text, PRIMARY KEY ("a""b", "Order"))`,
    key: ['a"b', 'Order'],
  },
  // Column names that are also the aliases and columns Capra's own SQL uses.
  {
    schema: MY,
    name: 'select',
    cols: `("from" int PRIMARY KEY, "where" text, "$1" text, d int, k int, r int, s int, t int, u int, pk text, txid text)`,
    key: ['from'],
  },
  { schema: MY, name: INJECT, cols: `(${quoteIdent(INJECT_COL)} int PRIMARY KEY, "back\\slash" text, "dot.ted" text)`, key: [INJECT_COL] },
  { schema: MY, name: 'a.b', cols: `(k int, t text, v text, PRIMARY KEY (k, t))`, key: ['k', 't'] },
  // No primary key: the unique index named under tables.keys, itself oddly named.
  { schema: MY, name: 'no pk "here"', cols: `("Id" int NOT NULL, "Tag" text NOT NULL, v text)`, key: ['Id', 'Tag'] },
  { schema: WEIRD, name: 'T', cols: `("ÜNÏ" text PRIMARY KEY, "n" numeric)`, key: ['ÜNÏ'] },
  // Keys whose types are themselves oddly named: an enum and a NOT NULL domain in the odd schemas.
  {
    schema: MY,
    name: 'typed keys',
    cols: `("Kind" "My Schema"."Odd ""Enum""", "Name" "we""ird.schema"."dom.ain", v text, PRIMARY KEY ("Kind", "Name"))`,
    key: ['Kind', 'Name'],
  },
];
const KEY_INDEX = 'odd idx "name".x';

const qt = (schema: string, name: string): string => `${quoteIdent(schema)}.${quoteIdent(name)}`;
const q = (tb: OddTable): string => qt(tb.schema, tb.name);
const byName = (name: string): string => q(tables.find((tb) => tb.name === name)!);
/** The config's selector syntax: a part is double-quoted only when it must be (a dot or a quote in it). */
const selector = (schema: string, name?: string): string =>
  [schema, ...(name === undefined ? [] : [name])].map((p) => (/[".]/.test(p) ? `"${p.replaceAll('"', '""')}"` : p)).join('.');

const schema = `
  CREATE TABLE public.victims (id int PRIMARY KEY, note text);
  INSERT INTO public.victims VALUES (1, 'still here');
  CREATE SCHEMA ${quoteIdent(MY)};
  CREATE SCHEMA ${quoteIdent(WEIRD)};
  CREATE TYPE "My Schema"."Odd ""Enum""" AS ENUM ('a', 'b c', 'd"e');
  CREATE DOMAIN "we""ird.schema"."dom.ain" AS text NOT NULL CHECK (VALUE <> 'forbidden');
  ${tables.map((tb) => `CREATE TABLE ${q(tb)} ${tb.cols};`).join('\n  ')}
  CREATE UNIQUE INDEX ${quoteIdent(KEY_INDEX)} ON ${byName('no pk "here"')} ("Id", "Tag");
  CREATE TABLE ${qt(MY, 'not me')} (id int PRIMARY KEY);
`;

// The longest, oddest names validate.ts accepts: job ^[a-z][a-z0-9_]{0,39}$ (unique per host), sync ^[A-Za-z][A-Za-z0-9_-]{0,62}$.
const jobName = (): string => `z9_odd__job__name_${randomBytes(11).toString('hex')}`;
const SYNC = 'Odd-SYNC_name--with-_Dashes_0123456789-UPPER-lower-xx-yy-zz-END';
const A = 'Src_A';
const B = '_dst_B9';
const C = 'dst_C';

async function changeEverything(a: string): Promise<void> {
  const mixed = byName('Mixed Case');
  await sql(a, `INSERT INTO ${mixed} ("Order", """quoted""", "with space", "user") VALUES (1, 'q1', 's1', 'u1'), (2, 'q2', 's2', 'u2'), (3, 'q3', 's3', 'u3')`);
  await sql(a, `UPDATE ${mixed} SET """quoted""" = 'q1!', "user" = 'u1!' WHERE "Order" = 1`);
  await sql(a, `UPDATE ${mixed} SET "Order" = 20 WHERE "Order" = 2`);
  await sql(a, `DELETE FROM ${mixed} WHERE "Order" = 3`);

  const space = byName('has space');
  await sql(a, `INSERT INTO ${space} ("Key Col", "select", "it's") VALUES ('k 1', 1, 'it''s'), ('k"2', 2, NULL), ('k''3', 3, 'x'), ('k;4', 4, 'y')`);
  await sql(a, `UPDATE ${space} SET "select" = "select" + 10 WHERE "Key Col" = 'k"2'`);
  await sql(a, `UPDATE ${space} SET "Key Col" = 'k 1 moved' WHERE "Key Col" = 'k 1'`);
  await sql(a, `DELETE FROM ${space} WHERE "Key Col" = 'k''3'`);

  const quote = byName('quote"inside');
  await sql(a, `INSERT INTO ${quote} ("a""b", "Order", "user", "100%") VALUES (1, 'x', 'u', 'p'), (1, 'y', 'u', 'p'), (2, 'x', 'u', 'p'), (2, 'y', 'u', 'p')`);
  await sql(a, `UPDATE ${quote} SET "100%" = '100%' WHERE ("a""b", "Order") = (1, 'x')`);
  await sql(a, `UPDATE ${quote} SET "Order" = 'z' WHERE ("a""b", "Order") = (1, 'y')`);
  await sql(a, `UPDATE ${quote} SET "a""b" = 3 WHERE ("a""b", "Order") = (2, 'x')`);
  await sql(a, `DELETE FROM ${quote} WHERE ("a""b", "Order") = (2, 'y')`);

  const sel = byName('select');
  await sql(a, `INSERT INTO ${sel} VALUES (1, 'w', '$1', 1, 2, 3, 4, 5, 6, 'pk', 'txid'), (2, 'w2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  await sql(a, `BEGIN; TRUNCATE ${sel}; INSERT INTO ${sel} ("from", "where") VALUES (3, 'after truncate'); COMMIT`);
  await sql(a, `UPDATE ${sel} SET "from" = 4, t = 44 WHERE "from" = 3`);
  await sql(a, `INSERT INTO ${sel} ("from", "where", pk) VALUES (5, 'later', '{"x":1}')`);

  const inj = byName(INJECT);
  const ic = quoteIdent(INJECT_COL);
  await sql(a, `INSERT INTO ${inj} VALUES (1, 'a\\b', 'c.d'), (2, NULL, NULL), (3, '''; DROP TABLE victims; --', NULL)`);
  await sql(a, `UPDATE ${inj} SET ${ic} = 10 WHERE ${ic} = 1`);
  await sql(a, `UPDATE ${inj} SET "dot.ted" = 'e.f' WHERE ${ic} = 2`);
  await sql(a, `DELETE FROM ${inj} WHERE ${ic} = 3`);

  const ab = byName('a.b');
  await sql(a, `INSERT INTO ${ab} VALUES (1, 'one', 'v1'), (2, 'two', 'v2'), (3, 'three', 'v3')`);
  await sql(a, `UPDATE ${ab} SET t = 'ONE' WHERE k = 1`);
  await sql(a, `TRUNCATE ${ab}`);
  await sql(a, `INSERT INTO ${ab} VALUES (7, 'seven', 'after truncate')`);

  const nopk = byName('no pk "here"');
  await sql(a, `INSERT INTO ${nopk} VALUES (1, 'a', 'x'), (1, 'b', 'y'), (2, 'a', 'z')`);
  await sql(a, `UPDATE ${nopk} SET v = 'y!' WHERE ("Id", "Tag") = (1, 'b')`);
  await sql(a, `UPDATE ${nopk} SET "Tag" = 'A' WHERE ("Id", "Tag") = (2, 'a')`);
  await sql(a, `DELETE FROM ${nopk} WHERE ("Id", "Tag") = (1, 'a')`);

  const typed = byName('typed keys');
  await sql(a, `INSERT INTO ${typed} VALUES ('a', 'n1', 'v1'), ('b c', 'n2', 'v2'), ('a', 'n3', 'v3')`);
  await sql(a, `UPDATE ${typed} SET v = 'V2' WHERE "Kind" = 'b c'`);
  await sql(a, `UPDATE ${typed} SET "Kind" = 'd"e' WHERE "Name" = 'n1'`);
  await sql(a, `DELETE FROM ${typed} WHERE "Name" = 'n3'`);

  const weird = qt(WEIRD, 'T');
  await sql(a, `INSERT INTO ${weird} VALUES ('ä', 1), ('"', 2), ('''', 3)`);
  await sql(a, `UPDATE ${weird} SET "ÜNÏ" = 'Ä' WHERE "ÜNÏ" = 'ä'`);
  await sql(a, `DELETE FROM ${weird} WHERE "ÜNÏ" = ''''`);
}

async function checkEverything(t: TapTest, urls: Record<string, string>, nodes: string[], job: Job): Promise<void> {
  for (const tb of tables) {
    await waitSame(job, q(tb), nodes, { orderBy: tb.key.map(quoteIdent).join(', ') });
  }
  for (const n of nodes.slice(1)) {
    const u = urls[n]!;
    t.equal(await digest(u, byName('Mixed Case'), '"Order"'), '(1,q1!,s1,u1!)\n(20,q2,s2,u2)', `${n}: "Mixed Case"`);
    t.equal(await digest(u, byName('has space'), '"Key Col"'), '("k 1 moved",1,it\'s)\n("k""2",12,)\n(k;4,4,y)', `${n}: "has space"`);
    t.equal(await digest(u, byName('quote"inside'), '"a""b", "Order"'), '(1,x,u,100%)\n(1,z,u,p)\n(3,x,u,p)', `${n}: quote"inside (composite key)`);
    t.equal(await digest(u, byName('select'), '"from"'), '(4,"after truncate",,,,,,44,,,)\n(5,later,,,,,,,,"{""x"":1}",)', `${n}: "select"`);
    t.equal(await digest(u, byName(INJECT), quoteIdent(INJECT_COL)), '(2,,e.f)\n(10,"a\\\\b",c.d)', `${n}: the injection-named table`);
    t.equal(await digest(u, byName('a.b'), 'k, t'), '(7,seven,"after truncate")', `${n}: "a.b" after truncate`);
    t.equal(await digest(u, byName('no pk "here"'), '"Id", "Tag"'), '(1,b,y!)\n(2,A,z)', `${n}: keyed by the named unique index`);
    t.equal(await digest(u, qt(WEIRD, 'T'), '"ÜNÏ"'), '("""",2)\n(Ä,1)', `${n}: ${WEIRD}.T`);
    t.equal(await digest(u, byName('typed keys'), '"Kind", "Name"'), '("b c",n2,V2)\n("d""e",n1,v1)', `${n}: keys of oddly named enum and domain types`);
  }
  for (const n of nodes) {
    t.same(
      await sql(urls[n]!, `SELECT to_regclass('public.victims') IS NOT NULL AS here, (SELECT count(*)::int FROM public.victims) AS n`),
      [{ here: true, n: 1 }],
      `${n}: public.victims still exists`,
    );
  }
}

t.test('odd names replicate when each table is named in the config', async (t) => {
  const job = await makeJob(t, {
    name: jobName(),
    nodes: { [A]: c1!, [B]: c2!, [C]: c3! },
    schema,
    yaml: [
      'syncs:',
      `  ${JSON.stringify(SYNC)}:`,
      `    sources: [${A}]`,
      `    targets: [${B}, ${C}]`,
      `    tables: ${JSON.stringify({
        include: tables.map((tb) => selector(tb.schema, tb.name)),
        keys: { [selector(MY, 'no pk "here"')]: KEY_INDEX },
      })}`,
    ].join('\n'),
  });
  t.equal(job.cfg.syncs[SYNC]?.name, SYNC, 'the sync name is taken as written');
  t.same(
    job.cfg.syncs[SYNC]?.tables.include,
    [
      'My Schema.Mixed Case',
      'My Schema.has space',
      'My Schema."quote""inside"',
      'My Schema.select',
      'My Schema."x""; DROP TABLE victims; --"',
      'My Schema."a.b"',
      'My Schema."no pk ""here"""',
      '"we""ird.schema".T',
      'My Schema.typed keys',
    ],
    'the selectors as the config holds them',
  );
  await setUp(job);
  startDaemon(t, job);
  await changeEverything(job.urls[A]!);
  await checkEverything(t, job.urls, [A, B, C], job);
  t.equal(await digest(job.urls[B]!, qt(MY, 'not me'), 'id'), '', 'a table not named is not replicated');
});

t.test('odd names replicate when whole schemas are included', async (t) => {
  const job = await makeJob(t, {
    name: jobName(),
    nodes: { [A]: c1!, [B]: c2! },
    schema,
    yaml: [
      'syncs:',
      `  ${JSON.stringify(SYNC)}:`,
      `    sources: [${A}]`,
      `    targets: [${B}]`,
      `    tables: ${JSON.stringify({
        include: [selector(MY), selector(WEIRD)],
        exclude: [selector(MY, 'not me')],
        keys: { [selector(MY, 'no pk "here"')]: KEY_INDEX },
      })}`,
    ].join('\n'),
  });
  await setUp(job);
  startDaemon(t, job);
  await changeEverything(job.urls[A]!);
  await sql(job.urls[A]!, `INSERT INTO ${qt(MY, 'not me')} VALUES (1)`);
  await checkEverything(t, job.urls, [A, B], job);
  t.equal(await digest(job.urls[B]!, qt(MY, 'not me'), 'id'), '', 'the excluded table is not replicated');
  t.same(
    await sql(
      job.urls[A]!,
      `SELECT n.nspname AS schema, c.relname AS table, array_agg(tg.tgname::text ORDER BY tg.tgname) AS triggers
      FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE tg.tgname LIKE 'capra%' AND c.relname = $1 GROUP BY 1, 2`,
      [INJECT],
    ),
    [{ schema: MY, table: INJECT, triggers: [...(defaultCaptureMode === 'row' ? ROW_TRIGGERS : STATEMENT_TRIGGERS)].sort() }],
    'the injection-named table got its capture triggers under its exact name',
  );
});
