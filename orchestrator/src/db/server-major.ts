import type pg from 'pg';

const majors = new WeakMap<pg.ClientBase, number>();

/**
 * The major version of the server a connection is on (server_version_num /
 * 10000), asked once per connection: a pooled connection keeps its server.
 */
export async function serverMajor(client: pg.ClientBase): Promise<number> {
  const known = majors.get(client);
  if (known !== undefined) return known;
  const r = await client.query<{ major: number }>(`SELECT current_setting('server_version_num')::int / 10000 AS major`);
  const major = r.rows[0]!.major;
  majors.set(client, major);
  return major;
}
