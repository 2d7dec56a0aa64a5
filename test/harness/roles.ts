// Roles and databases prepared the way README's "running without superuser"
// says: an application role that owns the tables, a replication role that
// is no superuser, owns nothing of the app's and holds only the grants listed.
import { randomBytes } from 'node:crypto';
import { type ClusterInfo, type TeardownTest, freshDb, sql } from './db.js';

export interface Roles {
  app: string;
  capra: string;
}

export interface Node {
  admin: string;
  app: string;
  capra: string;
}

export const urlAs = (c: ClusterInfo, role: string, db: string): string => `postgres://${role}@${c.host}:${c.port}/${db}`;

/**
 * The two roles on every cluster (roles are cluster-wide: dropped in a
 * teardown registered before the databases, so it runs after they are gone).
 */
export async function makeRoles(t: TeardownTest, clusters: ClusterInfo[], setParam: boolean): Promise<Roles> {
  const rand = randomBytes(4).toString('hex');
  const app = `app_${rand}`;
  const capra = `capra_${rand}`;
  for (const c of clusters) {
    const admin = urlAs(c, c.user, 'postgres');
    await sql(admin, `CREATE ROLE ${app} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    await sql(admin, `CREATE ROLE ${capra} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    if (setParam) await sql(admin, `GRANT SET ON PARAMETER session_replication_role TO ${capra}`);
    t.teardown(async () => {
      if (!t.passing()) return; // the kept databases still hold their grants
      if (setParam) await sql(admin, `REVOKE SET ON PARAMETER session_replication_role FROM ${capra}`);
      await sql(admin, `DROP ROLE IF EXISTS ${capra}`);
      await sql(admin, `DROP ROLE IF EXISTS ${app}`);
    });
  }
  return { app, capra };
}

/**
 * A node's database, prepared by the admin exactly as the README says; the
 * app role creates its tables (`schema`) and grants capra `grants` (the
 * table grants, by default on items and notes).
 */
export async function prepareNode(t: TeardownTest, c: ClusterInfo, roles: Roles, schema: string, grants?: string): Promise<Node> {
  const admin = await freshDb(t, c, 'lp');
  const db = new URL(admin).pathname.slice(1);
  await sql(
    admin,
    `REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
    GRANT CONNECT ON DATABASE ${db} TO ${roles.app}, ${roles.capra};
    GRANT CREATE, TEMPORARY ON DATABASE ${db} TO ${roles.capra};
    GRANT USAGE, CREATE ON SCHEMA public TO ${roles.app};
    GRANT USAGE ON SCHEMA public TO ${roles.capra};`,
  );
  const app = urlAs(c, roles.app, db);
  await sql(app, schema);
  await sql(app, grants ?? `GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON items, notes TO ${roles.capra}`);
  return { admin, app, capra: urlAs(c, roles.capra, db) };
}

/** The metadata database: created by the admin, capra may create its schema there. */
export async function prepareMeta(t: TeardownTest, c: ClusterInfo, capra: string): Promise<string> {
  const admin = await freshDb(t, c, 'lpmeta');
  const db = new URL(admin).pathname.slice(1);
  await sql(admin, `REVOKE ALL ON DATABASE ${db} FROM PUBLIC; GRANT CONNECT, CREATE ON DATABASE ${db} TO ${capra}`);
  return urlAs(c, capra, db);
}
