// The clone's COPY format: binary where every side can take it (same major
// version, the same built-in type in every column), text otherwise, and the
// progress row count right in both formats however the stream is cut.
import t from 'tap';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { chooseFormat, columnTypes } from '../orchestrator/src/clone/copy-format.js';
import { binaryRowCounter, textRowCounter } from '../orchestrator/src/clone/row-count.js';
import { digest, makeJob, setUp, startDaemon } from './harness/capra.js';
import { freshDb, sql, testClusters, waitFor, withClient } from './harness/db.js';

const { clusters, other } = testClusters();
const [c1, c2] = clusters;

// Built-in types only, with the values that are hard in one format or the other.
const yTable = `CREATE TABLE y (id int PRIMARY KEY, t text, b bytea, n numeric(30,10), f float8, ts timestamptz, iv interval,
    j jsonb, ia int[], ta text[], r int8range, u uuid, ip inet, ok bool, c char(5))`;
const builtin = `${yTable};
  INSERT INTO y VALUES
    (1, E'tab\\there\\nnewline \\\\ ü 😀', '\\x00ff0a', 12345678901234567890.0123456789, 'NaN', '2024-02-29 23:59:59.999999+05:45',
     '1 year 2 days 00:00:01.5', '{"a": [1, null]}', '{1,NULL,3}', '{"a,b","c\\"d",NULL}', '[1,10)', gen_random_uuid(), '10.0.0.1/8', true, 'ab'),
    (2, '', '\\x', -0.0000000001, '-Infinity', 'infinity', '-1 mons', '[]', '{}', '{}', 'empty', NULL, '::1', false, ''),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
  INSERT INTO y (id, t, ia) SELECT g, repeat(md5(g::text), g % 50), ARRAY[g, -g] FROM generate_series(4, 3000) g;`;

// Types that must go as text: a user enum and domain, a regclass, and (on the target) bigint for the source's int.
const userTypes = (idType: string): string => `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN pos AS int CHECK (VALUE > 0);
  CREATE TABLE z (id ${idType} PRIMARY KEY, m mood, ms mood[], p pos, rc regclass)`;

/** A table's rows as COPY sends them, in the given format. */
async function copyOut(url: string, table: string, format: 'text' | 'binary'): Promise<Buffer> {
  return withClient(url, async (c) => {
    const chunks: Buffer[] = [];
    const out = c.query(copyTo(`COPY ${table} TO STDOUT${format === 'binary' ? ' (FORMAT binary)' : ''}`));
    for await (const chunk of out) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  });
}

/** Rows counted when `data` arrives in pieces of `size` bytes. */
function countInPieces(make: () => (chunk: Buffer) => number, data: Buffer, size: number): number {
  const count = make();
  let rows = 0;
  for (let at = 0; at < data.length; at += size) rows += count(data.subarray(at, at + size));
  return rows;
}

t.test('rows are counted in both formats wherever the stream is cut', async (t) => {
  const url = await freshDb(t, c1!, 'rc');
  await sql(url, builtin);
  for (const format of ['text', 'binary'] as const) {
    const data = await copyOut(url, 'y', format);
    const make = format === 'binary' ? binaryRowCounter : textRowCounter;
    for (const size of [1, 2, 3, 5, 7, 19, 1000, data.length]) t.equal(countInPieces(make, data, size), 3000, `${format}, pieces of ${size} bytes`);
  }
  // A header extension (none of today's servers writes one) is skipped, not read as rows.
  const data = await copyOut(url, 'y', 'binary');
  const withExtension = Buffer.concat([data.subarray(0, 15), Buffer.from([0, 0, 0, 6, 0, 1, 0, 1, 0, 1]), data.subarray(19)]);
  t.equal(countInPieces(binaryRowCounter, withExtension, 3), 3000, 'binary with a header extension');
  const empty = await withClient(url, async (c) => {
    await c.query('CREATE TABLE e (id int)');
    return copyOut(url, 'e', 'binary');
  });
  t.equal(countInPieces(binaryRowCounter, empty, 1), 0, 'an empty table has no rows');
});

t.test('binary only where every side has the same built-in type, and the same major version', async (t) => {
  const a = await freshDb(t, c1!, 'fa');
  const b = await freshDb(t, c2!, 'fb');
  await sql(a, `${builtin}; ${userTypes('int')}`);
  await sql(b, `${yTable}; ${userTypes('bigint')}`);
  const side = (url: string, table: string) => withClient(url, (c) => columnTypes(c, { schema: 'public', table }));
  const yCols = ['id', 't', 'b', 'n', 'f', 'ts', 'iv', 'j', 'ia', 'ta', 'r', 'u', 'ip', 'ok', 'c'];
  t.equal(chooseFormat(yCols, [await side(a, 'y'), await side(b, 'y')]), 'binary', 'built-in types, the same on both sides');
  const za = await side(a, 'z');
  for (const col of ['m', 'ms', 'p', 'rc']) t.equal(chooseFormat(['id', col], [za, za]), 'text', `column ${col} goes as text`);
  t.equal(chooseFormat(['id'], [za, await side(b, 'z')]), 'text', 'int on the source, bigint on the target: text');
  t.equal(chooseFormat(['id'], [za, { ...za, major: za.major - 1 }]), 'text', 'another major version: text');
  if (other) {
    const o = await freshDb(t, other, 'fo');
    await sql(o, yTable);
    t.equal(
      chooseFormat(yCols, [await side(a, 'y'), await side(o, 'y')]),
      other.major === c1!.major ? 'binary' : 'text',
      `PostgreSQL ${c1!.major} and ${other.major}`,
    );
  }
});

t.test('a clone copies both kinds of table exactly', async (t) => {
  const job = await makeJob(t, {
    nodes: { a: c1!, b: c2! },
    yaml: 'syncs:\n  s:\n    sources: [a]\n    targets: [b]\n    tables: { include: [public.y, public.z] }\n    copy_data: never',
  });
  await sql(
    job.urls.a!,
    `${builtin}; ${userTypes('int')};
    INSERT INTO z SELECT g, (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, '{ok,NULL,happy}', g, 'y'::regclass FROM generate_series(1, 500) g`,
  );
  await sql(job.urls.b!, `${yTable}; ${userTypes('bigint')}; INSERT INTO y (id) VALUES (99999)`);
  await setUp(job);
  startDaemon(t, job);
  const id = Number((await sql(job.cfg.metadata, `SELECT repl.clone(sync => 's') AS id`))[0]!.id);
  await waitFor(
    async () => (await sql(job.cfg.metadata, `SELECT 1 FROM repl.clone WHERE id = $1 AND state <> 'queued' AND state <> 'running'`, [id])).length === 1,
    {
      what: 'the clone to end',
    },
  );
  const [row] = await sql(job.cfg.metadata, 'SELECT state, error FROM repl.clone WHERE id = $1', [id]);
  t.same(row, { state: 'done', error: null });
  for (const table of ['y', 'z']) t.equal(await digest(job.urls.b!, table), await digest(job.urls.a!, table), `${table} on b is identical to a`);
  t.same(
    await sql(job.cfg.metadata, `SELECT table_name, rows::int FROM repl.clone_table WHERE clone_id = $1 ORDER BY 1`, [id]),
    [
      { table_name: 'y', rows: 3000 },
      { table_name: 'z', rows: 500 },
    ],
    'rows counted in either format',
  );
  t.same(await sql(job.urls.b!, `SELECT rc::text FROM z LIMIT 1`), [{ rc: 'y' }], 'a regclass arrives as the name, not the source OID');
});

t.test('the server refuses binary rows of another type, which is why such tables go as text', async (t) => {
  const a = await freshDb(t, c1!, 'ra');
  const b = await freshDb(t, c2!, 'rb');
  await sql(a, 'CREATE TABLE w (id int); INSERT INTO w VALUES (1)');
  await sql(b, 'CREATE TABLE w (id bigint)');
  const data = await copyOut(a, 'w', 'binary');
  const err = await withClient(b, async (c) => {
    const into = c.query(copyFrom('COPY w FROM STDIN (FORMAT binary)'));
    return new Promise<Error | null>((resolve) => {
      into.on('error', resolve);
      into.on('finish', () => resolve(null));
      into.end(data);
    });
  });
  t.ok(err, 'binary int into bigint fails');
});
