import type pg from 'pg';
import type { Config } from '../config/types.js';
import { inTransaction } from '../db/connections.js';
import { parseTableName } from '../db/table-ref.js';
import { describeUrl } from '../util/url.js';

/**
 * Copies the config's nodes and syncs into the metadata database, so the SQL
 * API can check names and `status` can list syncs without the file. Runs on
 * install and reload; removed syncs go, with their table lists, and the
 * groups are replaced whole.
 */
export async function publishConfig(client: pg.ClientBase, cfg: Config): Promise<void> {
  await inTransaction(client, async () => {
    const dbs = Object.keys(cfg.databases);
    await client.query(
      `INSERT INTO repl.node (name, display) SELECT * FROM unnest($1::text[], $2::text[])
       ON CONFLICT (name) DO UPDATE SET display = EXCLUDED.display, updated_at = now()`,
      [dbs, dbs.map((d) => describeUrl(cfg.databases[d]!))],
    );
    const syncs = Object.values(cfg.syncs);
    await client.query('DELETE FROM repl.sync WHERE name <> ALL ($1::text[])', [syncs.map((s) => s.name)]);
    for (const s of syncs) {
      const kick = s.kick.cron ? (s.kick.notify ? `notify+${s.kick.cron}` : s.kick.cron) : 'notify';
      await client.query(
        `INSERT INTO repl.sync (name, kick, conflict, copy_data, cascade) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET kick = $2, conflict = $3, copy_data = $4, cascade = $5, updated_at = now()`,
        [s.name, kick, JSON.stringify(s.conflict), s.copyData, s.cascade],
      );
      await client.query('DELETE FROM repl.sync_node WHERE sync = $1', [s.name]);
      await client.query(
        `INSERT INTO repl.sync_node (sync, node, role)
         SELECT $1, n, 'source' FROM unnest($2::text[]) n UNION ALL SELECT $1, n, 'target' FROM unnest($3::text[]) n`,
        [s.name, s.sources, s.targets],
      );
    }
    await client.query('DELETE FROM repl.node WHERE name <> ALL ($1::text[])', [dbs]);
    await publishGroups(client, cfg);
    // A target that left a sync (or a removed sync) gets its initial copy again if it comes back.
    await client.query(`DELETE FROM repl.seeded s WHERE NOT EXISTS (SELECT 1 FROM repl.sync_node n WHERE n.sync = s.sync AND n.node = s.target)`);
  });
}

/** The table and database groups, each member with its place in the config's list (a dbgroup's first database is a clone's source). */
async function publishGroups(client: pg.ClientBase, cfg: Config): Promise<void> {
  await client.query('DELETE FROM repl.table_group');
  await client.query('DELETE FROM repl.db_group');
  const tables = Object.entries(cfg.groups.tables).flatMap(([name, refs]) => refs.map((ref, i) => ({ name, i, ...parseTableName(ref) })));
  await client.query(
    `INSERT INTO repl.table_group (name, position, schema_name, table_name)
     SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])`,
    [tables.map((t) => t.name), tables.map((t) => t.i), tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  const dbs = Object.entries(cfg.groups.databases).flatMap(([name, nodes]) => nodes.map((node, i) => ({ name, i, node })));
  await client.query(`INSERT INTO repl.db_group (name, position, node) SELECT * FROM unnest($1::text[], $2::int[], $3::text[])`, [
    dbs.map((d) => d.name),
    dbs.map((d) => d.i),
    dbs.map((d) => d.node),
  ]);
}
