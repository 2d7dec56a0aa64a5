// Trap 9: types survive replication. NULLs, bytea, jsonb, arrays, numeric,
// float8 specials, timestamptz, dates, intervals, uuid, awkward text, enums,
// domains, generated and identity columns, large rows; keys of unusual types;
// and values that must not change meaning when source and target sessions
// format dates, intervals and floats differently.
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { sql, testClusters, waitFor, withClient } from './harness/db.js';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const { clusters } = testClusters();
const [c1, c2] = clusters;

const md5 = (v: string | Buffer): string => createHash('md5').update(v).digest('hex');

async function one<R extends Record<string, unknown>>(url: string, text: string, params?: unknown[]): Promise<R> {
  const rows = await sql<R>(url, text, params);
  if (rows.length !== 1) throw new Error(`expected one row from ${text}, got ${rows.length}`);
  return rows[0]!;
}

const schema = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s "complicated", really');
  CREATE DOMAIN code AS text CHECK (VALUE ~ '^[A-Z]{2,5}$');
  CREATE DOMAIN nonblank AS text NOT NULL CHECK (VALUE <> '');
  CREATE TABLE kinds (
    id    int PRIMARY KEY,
    gen   int GENERATED ALWAYS AS (coalesce(octet_length(tx), -1) * 10 + coalesce(cardinality(ia), -1)) STORED,
    b     bytea,
    j     jsonb,
    ia    int[],
    ta    text[],
    n     numeric,
    f     float8,
    ts    timestamptz,
    d     date,
    iv    interval,
    u     uuid,
    tx    text,
    m     mood,
    c     code,
    ident bigint GENERATED ALWAYS AS IDENTITY
  );
  -- Composite key of timestamptz and text; a NOT NULL domain column besides.
  CREATE TABLE events (at timestamptz, tag text, label nonblank, note text, PRIMARY KEY (at, tag));
  CREATE TABLE docs (id uuid PRIMARY KEY, body jsonb, rev int NOT NULL);
`;

const allBytes = Buffer.concat([Buffer.from([0, 0, 0]), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from([0])]);
const oddText = 'tab\there\nnewline\r\ncrlf\rcr \\backslash\\ \\N \n\\.\n ☃ ünïcödé 日本語 😀👩‍👩‍👧 \u0001\u001f ctl \'sq\' "dq" ,{}';
const oddArray = ['a,b', 'c"d', '{e}', null, 'NULL', '', ' spaced ', 'back\\slash', 'tab\tnl\n', '😀'];
const bigNumeric = '12345678901234567890123456789012345678901234567890.12345678901234567890123456789012345678901234567890';
const nestedJson = {
  nested: { a: [1, { b: null }, [], {}], 'ü key': '日本語 🎉', esc: 'quote" back\\ nl\n tab\t' },
  empty_o: {},
  empty_a: [],
  t: true,
  f: false,
  nul: null,
};
// JSON numbers beyond float precision must survive too (jsonb keeps them as numeric).
const nestedJsonText = JSON.stringify(nestedJson).replace(/}$/, ', "num": 1.000000000000000000001, "big": 123456789012345678901234567890}');

// id, b, j, ia, ta, n, f, ts, d, iv, u, tx, m, c
type KindRow = [
  number,
  Buffer | null,
  string | null,
  string | null,
  (string | null)[] | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
  string | null,
];
const bigText = `${randomBytes(3_000_000).toString('base64') + '€'.repeat(350_000)}\t\\\n`; // ~5 MB of UTF-8
const bigBytes = randomBytes(2 * 1024 * 1024);
const kindRows: KindRow[] = [
  [1, null, null, null, null, null, null, null, null, null, null, null, null, null],
  [
    2,
    allBytes,
    nestedJsonText,
    '{1,NULL,-3,2147483647,-2147483648}',
    oddArray,
    bigNumeric,
    'Infinity',
    'infinity',
    '0044-03-15 BC',
    '1 year 2 mons -3 days +04:05:06.789012',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    oddText,
    `it's "complicated", really`,
    'ABC',
  ],
  [
    3,
    Buffer.alloc(0),
    'null',
    '{}',
    [],
    'NaN',
    '-0',
    '2024-02-29 23:59:59.999999+05:45',
    '2024-02-29',
    '-178000000 years',
    '00000000-0000-0000-0000-000000000000',
    '',
    'sad',
    'ZZZZZ',
  ],
  [
    4,
    Buffer.from([0]),
    '{}',
    '[0:2]={1,2,3}',
    null,
    '-1e-30',
    'NaN',
    '-infinity',
    '1999-12-31',
    '-1 days -02:00:00',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '\\',
    'ok',
    'QQ',
  ],
  [
    5,
    Buffer.from('\\x00'),
    '[]',
    '{{1,2},{3,NULL}}',
    ['{"a b",c}', '}'],
    '1.500',
    '0.30000000000000004',
    '1999-12-31 23:59:59.000001-12',
    '2000-01-01',
    '1 mon -00:00:00.000001',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12',
    'plain',
    null,
    null,
  ],
  [
    6,
    null,
    '"just a string \\u00e9"',
    null,
    null,
    '0.000000000000000000000000000001',
    '5e-324',
    '2038-01-19 03:14:08+00',
    '5874897-12-31',
    '-00:00:01',
    null,
    null,
    null,
    null,
  ],
  [
    7,
    null,
    '123.4560',
    null,
    null,
    '-99999999999999999999999999999999999999.000',
    '-1.7976931348623157e308',
    '1970-01-01 00:00:00+14',
    '4713-01-01 BC',
    '0',
    null,
    'only text',
    null,
    null,
  ],
  [10, bigBytes, null, '{42}', null, null, null, null, null, null, null, bigText, null, null],
];

const insertKinds = `INSERT INTO kinds (id, b, j, ia, ta, n, f, ts, d, iv, u, tx, m, c)
  VALUES ($1, $2, $3::jsonb, $4::int[], $5::text[], $6::numeric, $7::float8, $8::timestamptz, $9::date, $10::interval, $11::uuid, $12, $13::mood, $14::code)`;

t.test('every type survives insert, update and delete', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public] }',
  });
  const a = job.urls.a!;
  const b = job.urls.b!;
  // The source's identity hands out other values than the target's would: they must be copied, not regenerated.
  await sql(a, 'ALTER TABLE kinds ALTER COLUMN ident RESTART WITH 1000');
  // Digests order by the whole key (a bare ordinal would be a constant inside string_agg's ORDER BY).
  const orderBy: Record<string, string> = { kinds: 'id', events: 'at, tag', docs: 'id' };
  const waitAll = async (): Promise<void> => {
    for (const [table, keys] of Object.entries(orderBy)) await waitSame(job, table, ['a', 'b'], { orderBy: keys });
  };
  await setUp(job);
  startDaemon(t, job);

  await withClient(a, async (c) => {
    for (const r of kindRows) await c.query(insertKinds, r);
  });
  await sql(
    a,
    `INSERT INTO events (at, tag, label, note) VALUES
      ('2024-01-01 00:00:00.000001+00', E'tab\\there', 'one', NULL),
      ('2024-01-01 01:00:00.000001+01', 'é ünïcode 🎉', 'same instant, other tag', 'n'),
      ('infinity', 'x"; --', 'inf', NULL),
      ('-infinity', '', 'empty tag', NULL),
      ('2000-06-15 12:00:00.5-07:30', E'\\\\N', 'copy null marker as a key', NULL)`,
  );
  await sql(
    a,
    `INSERT INTO docs VALUES
      ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"v": 1}', 1),
      ('00000000-0000-0000-0000-000000000000', '{"v": [null]}', 1),
      ('ffffffff-ffff-ffff-ffff-ffffffffffff', '{}', 1)`,
  );
  await waitAll();
  t.equal(await digest(b, 'kinds', 'id'), await digest(a, 'kinds', 'id'), 'kinds after inserts');
  // Rows 3 and 4 are changed below; their first values, by typed queries on the target.
  t.same(
    await sql(
      b,
      `SELECT id, length(b) AS lb, j::text AS j, ia::text AS ia, ta::text AS ta, n::text AS n, f::text AS f,
      to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts, ts::text = '-infinity' AS neg_inf, d::text AS d,
      iv = (CASE id WHEN 3 THEN '-178000000 years' ELSE '-1 days -02:00:00' END)::interval AS iv, extract(day FROM iv)::int AS iv_days, u::text AS u, tx, m::text AS m, c::text AS c
      FROM kinds WHERE id IN (3, 4) ORDER BY id`,
    ),
    [
      {
        id: 3,
        lb: 0,
        j: 'null',
        ia: '{}',
        ta: '{}',
        n: 'NaN',
        f: '-0',
        ts: '2024-02-29 18:14:59.999999',
        neg_inf: false,
        d: '2024-02-29',
        iv: true,
        iv_days: 0,
        u: '00000000-0000-0000-0000-000000000000',
        tx: '',
        m: 'sad',
        c: 'ZZZZZ',
      },
      {
        id: 4,
        lb: 1,
        j: '{}',
        ia: '[0:2]={1,2,3}',
        ta: null,
        n: '-0.000000000000000000000000000001',
        f: 'NaN',
        ts: null,
        neg_inf: true,
        d: '1999-12-31',
        iv: true,
        iv_days: -1,
        u: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
        tx: '\\',
        m: 'ok',
        c: 'QQ',
      },
    ],
    'empty bytea/arrays/text, JSON null, NaN, -0, -infinity, microseconds at +05:45, array bounds',
  );

  // Updates: NULLs to values, values to NULLs, partial edits of each type, a key change, deletes.
  await sql(
    a,
    `UPDATE kinds k SET (b, j, ia, ta, n, f, ts, d, iv, u, tx, m, c) =
      (SELECT s.b, s.j, s.ia, s.ta, s.n, s.f, s.ts, s.d, s.iv, s.u, s.tx, s.m, s.c FROM kinds s WHERE s.id = 2) WHERE k.id = 1`,
  );
  await sql(
    a,
    `UPDATE kinds SET j = jsonb_set((j || '{"added": "ünïx"}') - 'nul', '{nested,a,1,b}', '"set"'),
      ta = array_append(ta, 'x"y'), b = b || '\\x00ff'::bytea, ia[2] = 7, tx = tx || E'\\r\\n' WHERE id = 2`,
  );
  await sql(
    a,
    `UPDATE kinds SET (b, j, ia, ta, n, f, ts, d, iv, u, tx, m, c) =
      (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) WHERE id = 3`,
  );
  await sql(a, 'DELETE FROM kinds WHERE id = 4');
  await sql(a, 'UPDATE kinds SET id = 50 WHERE id = 5');
  await sql(a, `UPDATE kinds SET b = overlay(b placing '\\xdeadbeef'::bytea from 1000001), tx = tx || 'end' WHERE id = 10`);
  await sql(a, `INSERT INTO kinds (id, tx) VALUES (11, 'identity from the source')`);
  await sql(a, `UPDATE events SET note = E'updated\\n' WHERE tag = 'x"; --'`);
  await sql(a, `UPDATE events SET tag = tag || ' (renamed)' WHERE tag = 'é ünïcode 🎉'`);
  await sql(a, `UPDATE events SET at = at + interval '1 microsecond' WHERE tag = E'tab\\there'`);
  await sql(a, `DELETE FROM events WHERE at = '-infinity'`);
  await sql(a, `UPDATE docs SET body = body || '{"w": "ü"}', rev = rev + 1 WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`);
  await sql(a, `UPDATE docs SET id = '11111111-2222-3333-4444-555555555555' WHERE id = '00000000-0000-0000-0000-000000000000'`);
  await sql(a, `DELETE FROM docs WHERE id = 'ffffffff-ffff-ffff-ffff-ffffffffffff'`);
  await waitAll();

  // The digests (row::text) match; now the values themselves, by typed queries on the target.
  t.same(
    await sql(b, 'SELECT id FROM kinds ORDER BY id'),
    [1, 2, 3, 6, 7, 10, 11, 50].map((id) => ({ id })),
    'kinds keys on b',
  );
  t.same(await sql(b, 'SELECT id, ident FROM kinds ORDER BY id'), await sql(a, 'SELECT id, ident FROM kinds ORDER BY id'), 'identity values copied');
  t.same(await one(b, 'SELECT min(ident)::int AS lo, count(DISTINCT ident)::int AS n FROM kinds'), { lo: 1000, n: 8 }, "identity values are the source's");
  t.equal(
    (await one<{ b: Buffer }>(b, 'SELECT b FROM kinds WHERE id = 2')).b.toString('hex'),
    Buffer.concat([allBytes, Buffer.from([0, 255])]).toString('hex'),
    'bytea with zero bytes and every byte value',
  );
  t.same(
    await one(b, 'SELECT md5(b) AS m, length(b) AS l FROM kinds WHERE id = 1'),
    { m: md5(allBytes), l: allBytes.length },
    'bytea copied into the all-NULL row',
  );
  t.equal(
    (await one<{ b: Buffer }>(b, 'SELECT b FROM kinds WHERE id = 50')).b.toString('hex'),
    Buffer.from('\\x00').toString('hex'),
    'a bytea that looks like an escape',
  );

  const expectJ = { ...nestedJson, nested: { ...nestedJson.nested, a: [1, { b: 'set' }, [], {}] }, added: 'ünïx' } as Record<string, unknown>;
  delete expectJ.nul;
  t.same(
    await one(
      b,
      `SELECT j = ($1::jsonb || '{"num": 1.000000000000000000001, "big": 123456789012345678901234567890}') AS ok,
      j->>'num' AS num, j->>'big' AS big FROM kinds WHERE id = 2`,
      [JSON.stringify(expectJ)],
    ),
    { ok: true, num: '1.000000000000000000001', big: '123456789012345678901234567890' },
    'nested jsonb, unicode, big numbers',
  );
  t.same(
    await sql(b, `SELECT id, j IS NULL AS sql_null, j = 'null'::jsonb AS json_null, jsonb_typeof(j) AS ty FROM kinds WHERE id IN (3, 6, 7, 50) ORDER BY id`),
    [
      { id: 3, sql_null: true, json_null: null, ty: null },
      { id: 6, sql_null: false, json_null: false, ty: 'string' },
      { id: 7, sql_null: false, json_null: false, ty: 'number' },
      { id: 50, sql_null: false, json_null: false, ty: 'array' },
    ],
    'jsonb kinds',
  );
  t.same(
    await one(b, `SELECT ta = $1::text[] AS ok, ta[4] IS NULL AS null_elem, ta[5] AS null_word, cardinality(ta) AS n FROM kinds WHERE id = 2`, [
      [...oddArray, 'x"y'],
    ]),
    { ok: true, null_elem: true, null_word: 'NULL', n: oddArray.length + 1 },
    'text[] with NULLs, quotes, commas, braces',
  );
  t.same(
    await sql(b, `SELECT id, ia::text AS ia, array_lower(ia, 1) AS lo FROM kinds WHERE id IN (1, 2, 50) ORDER BY id`),
    [
      { id: 1, ia: '{1,NULL,-3,2147483647,-2147483648}', lo: 1 },
      { id: 2, ia: '{1,7,-3,2147483647,-2147483648}', lo: 1 },
      { id: 50, ia: '{{1,2},{3,NULL}}', lo: 1 },
    ],
    'int[] values, NULL elements, two dimensions',
  );
  t.same(await one(b, `SELECT ta::text AS ta FROM kinds WHERE id = 50`), { ta: '{"{\\"a b\\",c}","}"}' });
  t.same(
    await sql(b, `SELECT id, n::text AS n, f::text AS f FROM kinds WHERE id IN (1, 6, 7, 50) ORDER BY id`),
    [
      { id: 1, n: bigNumeric, f: 'Infinity' },
      { id: 6, n: '0.000000000000000000000000000001', f: '5e-324' },
      { id: 7, n: '-99999999999999999999999999999999999999.000', f: '-1.7976931348623157e+308' },
      { id: 50, n: '1.500', f: '0.30000000000000004' },
    ],
    'numeric precision and scale, float8 extremes',
  );
  t.same(await one(b, `SELECT n = $1::numeric AS ok FROM kinds WHERE id = 2`, [bigNumeric]), { ok: true });
  const tsq = `SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts, extract(microseconds FROM ts)::int AS us,
      isfinite(ts) AS fin, ts::text = $1 AS pos_inf, d::text AS d, iv = $2::interval AS iv_ok, u::text AS u, tx = $3 AS tx_ok, m::text AS m, c::text AS c
      FROM kinds WHERE id = ANY ($4::int[]) ORDER BY id`;
  t.same(
    await sql(b, tsq, ['infinity', '1 year 2 mons -3 days +04:05:06.789012', `${oddText}\r\n`, [2, 50]]),
    [
      {
        id: 2,
        ts: null,
        us: null,
        fin: false,
        pos_inf: true,
        d: '0044-03-15 BC',
        iv_ok: true,
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        tx_ok: true,
        m: `it's "complicated", really`,
        c: 'ABC',
      },
      {
        id: 50,
        ts: '2000-01-01 11:59:59.000001',
        us: 59000001,
        fin: true,
        pos_inf: false,
        d: '2000-01-01',
        iv_ok: false,
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
        tx_ok: false,
        m: null,
        c: null,
      },
    ],
    'timestamptz, date, interval, uuid, odd text, enum, domain',
  );
  t.same(
    await sql(
      b,
      `SELECT id, f::text AS f, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts, ts::text = '-infinity' AS neg_inf,
      iv = '-178000000 years'::interval AS iv FROM kinds WHERE id IN (3, 7) ORDER BY id`,
    ),
    [
      { id: 3, f: null, ts: null, neg_inf: null, iv: null },
      { id: 7, f: '-1.7976931348623157e+308', ts: '1969-12-31 10:00:00.000000', neg_inf: false, iv: false },
    ],
  );
  t.same(
    await one(b, `SELECT md5(tx) AS mt, octet_length(tx) AS lt, md5(b) AS mb, length(b) AS lb FROM kinds WHERE id = 10`),
    {
      mt: md5(`${bigText}end`),
      lt: Buffer.byteLength(`${bigText}end`),
      mb: md5(Buffer.concat([bigBytes.subarray(0, 1_000_000), Buffer.from('deadbeef', 'hex'), bigBytes.subarray(1_000_004)])),
      lb: bigBytes.length,
    },
    'the large row (5 MB text, 2 MB bytea) after a partial update',
  );
  t.same(
    await sql(b, `SELECT id, gen FROM kinds WHERE id IN (1, 3, 10, 11) ORDER BY id`),
    [
      { id: 1, gen: Buffer.byteLength(oddText) * 10 + 5 },
      { id: 3, gen: -11 },
      { id: 10, gen: Buffer.byteLength(`${bigText}end`) * 10 + 1 },
      { id: 11, gen: 'identity from the source'.length * 10 - 1 },
    ],
    'generated column computed on the target',
  );
  t.same(
    await sql(b, `SELECT count(*)::int AS n FROM kinds WHERE id = 3 AND num_nulls(b, j, ia, ta, n, f, ts, d, iv, u, tx, m, c) = 13`),
    [{ n: 1 }],
    'a row of NULLs stays NULL in every column',
  );

  t.same(
    await sql(b, `SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, tag, label, note FROM events ORDER BY at, tag`),
    [
      { at: '2000-06-15 19:30:00.500000', tag: '\\N', label: 'copy null marker as a key', note: null },
      { at: '2024-01-01 00:00:00.000001', tag: 'é ünïcode 🎉 (renamed)', label: 'same instant, other tag', note: 'n' },
      { at: '2024-01-01 00:00:00.000002', tag: 'tab\there', label: 'one', note: null },
      { at: null, tag: 'x"; --', label: 'inf', note: 'updated\n' },
    ],
    'events by (timestamptz, text) key: update, key change, delete',
  );
  t.same(
    await sql(b, `SELECT id::text AS id, body, rev FROM docs ORDER BY id`),
    [
      { id: '11111111-2222-3333-4444-555555555555', body: { v: [null] }, rev: 1 },
      { id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', body: { v: 1, w: 'ü' }, rev: 2 },
    ],
    'docs by uuid key: update, key change, delete',
  );
  t.equal((await one<{ n: number }>(b, 'SELECT count(*)::int AS n FROM repl.delta')).n, 0, 'the target captured nothing back');
});

// Pins the output formats of a session, so digests compare values, not the session's display settings.
async function pinnedDigest(url: string, table: string, orderBy: string): Promise<string> {
  return withClient(url, async (c) => {
    await c.query(`SET datestyle = 'ISO, MDY'; SET intervalstyle = postgres; SET extra_float_digits = 3; SET timezone = 'UTC'`);
    const r = await c.query<{ d: string | null }>(`SELECT string_agg(t::text, E'\\n' ORDER BY ${orderBy}) AS d FROM ${table} t`);
    return r.rows[0]?.d ?? '';
  });
}

async function alterDatabase(url: string, settings: Record<string, string>): Promise<void> {
  for (const [k, v] of Object.entries(settings)) {
    await sql(url, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET %s = %L', current_database(), '${k}', '${v}'); END $$`);
  }
}

t.test('values keep their meaning when the nodes format dates, intervals and floats differently', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    schema: `CREATE TABLE fmt (d date PRIMARY KEY, ts timestamptz, tsn timestamp, iv interval, f8 float8, f4 real,
                               ivs interval[], ds date[], note text)`,
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]',
  });
  const a = job.urls.a!;
  const b = job.urls.b!;
  // Every setting here is one a DBA may choose; none may change a replicated value.
  await alterDatabase(a, { datestyle: 'SQL, DMY', intervalstyle: 'sql_standard', extra_float_digits: '0', timezone: 'Asia/Kolkata' });
  await alterDatabase(b, { datestyle: 'ISO, MDY', intervalstyle: 'postgres', timezone: 'America/St_Johns' });
  await setUp(job);
  startDaemon(t, job);
  await withClient(a, async (c) => {
    await c.query(`SET datestyle = 'ISO, MDY'; SET intervalstyle = postgres; SET timezone = 'UTC'`);
    await c.query(`INSERT INTO fmt VALUES
        ('2024-03-04', '2024-03-04 12:34:56.789012+00', '2024-03-04 01:02:03.456789', '-1 days -02:00:00', 0.1::float8 + 0.2::float8, (1.0/3)::real,
         '{"-1 years +2 mons","1 day -02:00:00"}', '{2024-03-04,2024-04-03}', 'march'),
        ('2024-04-03', '2024-04-03 00:00:00.000001+00', '1999-12-31 23:59:59.999999', '-1 years -2 mons +3 days -04:05:06.789012', 1.0::float8 / 3, 0.1::real,
         NULL, NULL, 'april'),
        ('2024-12-31', 'infinity', NULL, '1 mon -00:00:00.000001', 1e300::float8 * 1.2345678901234567, 3.4028235e38::real,
         '{}', '{}', 'december')`);
  });
  const same = async (): Promise<boolean> => (await pinnedDigest(a, 'fmt', 'd')) === (await pinnedDigest(b, 'fmt', 'd'));
  await waitFor(same, { what: 'fmt to match after inserts', timeoutMs: 30_000 });
  await withClient(a, async (c) => {
    await c.query(`SET datestyle = 'ISO, MDY'`);
    await c.query(`UPDATE fmt SET note = 'march, changed' WHERE d = '2024-03-04'`); // the key travels as a date too
    await c.query(`DELETE FROM fmt WHERE d = '2024-12-31'`);
  });
  await waitFor(same, { what: 'fmt to match after update and delete', timeoutMs: 30_000 });
  t.equal(await pinnedDigest(b, 'fmt', 'd'), await pinnedDigest(a, 'fmt', 'd'));
  t.same(
    await withClient(b, async (c) => {
      await c.query(`SET datestyle = 'ISO, MDY'; SET intervalstyle = postgres; SET extra_float_digits = 3; SET timezone = 'UTC'`);
      return (await c.query(`SELECT d::text, ts::text, tsn::text, iv::text, f8::text, f4::text, ivs::text, ds::text, note FROM fmt ORDER BY d`)).rows;
    }),
    [
      {
        d: '2024-03-04',
        ts: '2024-03-04 12:34:56.789012+00',
        tsn: '2024-03-04 01:02:03.456789',
        iv: '-1 days -02:00:00',
        f8: '0.30000000000000004',
        f4: '0.33333334',
        ivs: '{"-10 mons","1 day -02:00:00"}',
        ds: '{2024-03-04,2024-04-03}',
        note: 'march, changed',
      },
      {
        d: '2024-04-03',
        ts: '2024-04-03 00:00:00.000001+00',
        tsn: '1999-12-31 23:59:59.999999',
        iv: '-1 years -2 mons +3 days -04:05:06.789012',
        f8: '0.3333333333333333',
        f4: '0.1',
        ivs: null,
        ds: null,
        note: 'april',
      },
    ],
    'exact values on the target',
  );
});
