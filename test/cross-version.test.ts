// Replication between two PostgreSQL major versions, both ways: capture,
// positions and COPY-based apply must not depend on source and target
// running the same server version.
import { createHash } from 'node:crypto';
import t from 'tap';
import { sql, testClusters, waitFor } from './harness/db.js';
import { digest, makeJob, setUp, startDaemon, waitSame } from './harness/capra.js';

const { clusters, other, otherSkipReason } = testClusters();
const [c1] = clusters;

const schema = `
  CREATE TABLE fwd (id int PRIMARY KEY, j jsonb, n numeric, ts timestamptz, b bytea, ia int[], ta text[]);
  CREATE TABLE back (id int PRIMARY KEY, j jsonb, n numeric, ts timestamptz, b bytea, ia int[], ta text[]);
`;
const md5hex = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
// biome-ignore lint/correctness/noPrecisionLoss: a number JSON carries with more digits than a double holds
const json = { a: [1, null, { ü: '日本 😀' }], e: {}, big: 12345678901234567890.5 };
const rows = (table: string) => `INSERT INTO ${table} VALUES
  (1, '${JSON.stringify(json)}', 12345678901234567890.123456789012345678901234567890, '2024-02-29 23:59:59.999999+05:45', $1, '{1,NULL,3}', '{"a,b","c\\"d",NULL}'),
  (2, '[]', 'NaN', 'infinity', '\\x00', '{}', '{}'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, '{"gone": true}', 1e-30, '-infinity', '', '{{1,2},{3,4}}', '{x}')`;

t.test(
  'a sync from the newer to the older major version and one back',
  {
    skip: other ? false : `no second PostgreSQL major version: ${otherSkipReason ?? 'unknown reason'}`,
  },
  async (t) => {
    if (!other) return;
    t.comment(`primary cluster: PostgreSQL ${c1!.major}, other: PostgreSQL ${other.major} (${other.binDir})`);
    const job = await makeJob(t, {
      nodes: { a: c1!, b: other },
      schema,
      yaml: [
        'syncs:',
        '  up:',
        '    sources: [a]',
        '    targets: [b]',
        '    tables: { include: [public.fwd] }',
        '  down:',
        '    sources: [b]',
        '    targets: [a]',
        '    tables: { include: [public.back] }',
      ].join('\n'),
    });
    const a = job.urls.a!;
    const b = job.urls.b!;
    const major = async (url: string): Promise<number> =>
      Math.floor(Number((await sql<{ v: string }>(url, `SELECT current_setting('server_version_num') AS v`))[0]!.v) / 10000);
    t.equal(await major(a), c1!.major, 'a runs on the primary cluster');
    t.equal(await major(b), other.major, 'b runs on the other cluster');
    t.not(c1!.major, other.major, 'two different major versions');

    await setUp(job);
    startDaemon(t, job);
    await sql(a, rows('fwd'), [bytes]);
    await sql(b, rows('back'), [bytes]);
    for (const [url, table] of [
      [a, 'fwd'],
      [b, 'back'],
    ] as const) {
      await sql(
        url,
        `UPDATE ${table} SET j = j || '{"more": [true]}', n = -n, ts = ts + interval '1 microsecond', b = b || '\\xff00', ia = ia || 4, ta = ta || 'NULL'::text WHERE id = 1`,
      );
      await sql(url, `UPDATE ${table} SET id = 30, n = 3 WHERE id = 3`);
      await sql(url, `DELETE FROM ${table} WHERE id = 4`);
    }
    await waitSame(job, 'fwd', ['a', 'b'], { orderBy: 'id' });
    await waitSame(job, 'back', ['a', 'b'], { orderBy: 'id' });

    for (const [url, table, dir] of [
      [b, 'fwd', `PG ${c1!.major} -> PG ${other.major}`],
      [a, 'back', `PG ${other.major} -> PG ${c1!.major}`],
    ] as const) {
      t.equal(await digest(url, table, 'id'), await digest(url === b ? a : b, table, 'id'), `${dir}: same rows`);
      t.same(
        await sql(
          url,
          `SELECT id, j = $1::jsonb AS j, n::text AS n, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts,
        md5(b) AS b, ia::text AS ia, ta::text AS ta FROM ${table} ORDER BY id`,
          [JSON.stringify({ ...json, more: [true] })],
        ),
        [
          {
            id: 1,
            j: true,
            n: '-12345678901234567890.123456789012345678901234567890',
            ts: '2024-02-29 18:15:00.000000',
            b: md5hex(Buffer.concat([bytes, Buffer.from([255, 0])])),
            ia: '{1,NULL,3,4}',
            ta: '{"a,b","c\\"d",NULL,"NULL"}',
          },
          { id: 2, j: false, n: 'NaN', ts: null, b: md5hex(Buffer.from([0])), ia: '{}', ta: '{}' },
          { id: 30, j: null, n: '3', ts: null, b: null, ia: null, ta: null },
        ],
        `${dir}: typed values`,
      );
      t.same(await sql(url, `SELECT ta[4] IS NULL AS real_null FROM ${table} WHERE id = 1`), [{ real_null: false }], `${dir}: the string 'NULL' is not a NULL`);
    }

    // A clone each way: COPY streams between the versions, TRUNCATE + COPY FREEZE on either.
    await sql(a, `UPDATE back SET n = 0`); // a's copy of back now differs from b's
    await sql(b, `DELETE FROM fwd`); // as does b's copy of fwd
    const meta = job.cfg.metadata;
    const ids = await sql<{ up: string; down: string }>(meta, `SELECT repl.clone(sync => 'up') AS up, repl.clone(sync => 'down') AS down`);
    await waitFor(
      async () =>
        (await sql(meta, `SELECT count(*)::int AS n FROM repl.clone WHERE state = 'done' AND id IN ($1, $2)`, [ids[0]!.up, ids[0]!.down]))[0]!.n === 2,
      { what: 'both clones' },
    );
    t.equal(await digest(b, 'fwd', 'id'), await digest(a, 'fwd', 'id'), `clone PG ${c1!.major} -> PG ${other.major}`);
    t.equal(await digest(a, 'back', 'id'), await digest(b, 'back', 'id'), `clone PG ${other.major} -> PG ${c1!.major}`);
  },
);

t.test(
  'a multi-master sync between the two major versions, a conflict settled',
  {
    skip: other ? false : `no second PostgreSQL major version: ${otherSkipReason ?? 'unknown reason'}`,
  },
  async (t) => {
    if (!other) return;
    const job = await makeJob(t, {
      nodes: { a: c1!, b: other },
      schema: `CREATE TABLE mm (id int PRIMARY KEY, v text, j jsonb, n numeric);`,
      yaml: ['syncs:', '  both:', '    sources: [a, b]', '    conflict: latest'].join('\n'),
    });
    const a = job.urls.a!;
    const b = job.urls.b!;
    await setUp(job);
    const first = startDaemon(t, job);
    await sql(a, `INSERT INTO mm SELECT g, 'a' || g, '{"from": "a"}', g / 3.0 FROM generate_series(1, 10) g`);
    await sql(b, `INSERT INTO mm SELECT g, 'b' || g, '{"from": "b"}', g / 7.0 FROM generate_series(11, 20) g`);
    await waitSame(job, 'mm', ['a', 'b'], { orderBy: 'id' });
    await sql(b, `UPDATE mm SET v = 'b changed ' || id WHERE id <= 3`);
    await sql(a, `DELETE FROM mm WHERE id > 17`);
    await sql(a, `UPDATE mm SET id = 100 WHERE id = 11`);
    await waitFor(async () => (await sql(b, 'SELECT 1 FROM mm WHERE id = 100')).length === 1, { what: "a's key change to reach b" });
    await waitSame(job, 'mm', ['a', 'b'], { orderBy: 'id' });
    t.same(await sql(a, 'SELECT count(*)::int AS n FROM mm'), [{ n: 17 }], `PG ${c1!.major} and PG ${other.major}: both ways`);

    // The conflict, made with the daemon stopped: a then b change row 5; latest: b wins.
    await first.stop();
    await sql(a, `UPDATE mm SET v = 'from a' WHERE id = 5`);
    await new Promise((r) => setTimeout(r, 20));
    await sql(b, `UPDATE mm SET v = 'from b' WHERE id = 5`);
    startDaemon(t, job);
    await waitSame(job, 'mm', ['a', 'b'], { orderBy: 'id' });
    for (const url of [a, b]) t.same(await sql(url, 'SELECT v FROM mm WHERE id = 5'), [{ v: 'from b' }], 'the later write wins on both');
    const log = await sql(job.cfg.metadata, 'SELECT table_name, key, winner FROM repl.conflict ORDER BY id');
    t.same(log, [{ table_name: 'public.mm', key: { id: 5 }, winner: 'b' }], 'one conflict logged');
    t.equal(await digest(a, 'mm', 'id'), await digest(b, 'mm', 'id'), 'same rows on both');
  },
);
