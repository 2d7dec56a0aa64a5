import type pg from 'pg';
import { type TableName, quoteTable } from '../db/ident.js';

/**
 * COPY format of a clone. Binary saves the target parsing text (about 12%
 * of a clone's time on pgbench_accounts, `npm run bench`), but its values
 * are only portable between servers of the same major version, and only for
 * built-in types: user types (enums, domains, composites, ranges of them)
 * carry their OIDs or differ between databases, reg* types send OIDs where
 * text sends names, and a column whose type differs on the target (int into
 * bigint) needs text's conversion.
 */
export type CopyFormat = 'text' | 'binary';

/** One side's view of the copied columns. */
export interface ColumnTypes {
  /** server_version_num / 10000. */
  major: number;
  /** Per column: its type's OID, or null when that type may not travel in binary. */
  types: Map<string, number | null>;
}

/** Types below this OID are built in (FirstNormalObjectId). */
const FIRST_USER_OID = 16384;

export async function columnTypes(client: pg.ClientBase, t: TableName): Promise<ColumnTypes> {
  const r = await client.query<{ major: number; name: string; type: number; portable: boolean }>(
    `SELECT current_setting('server_version_num')::int / 10000 AS major, a.attname AS name, a.atttypid::int AS type,
            ty.oid < $2 AND ty.typtype IN ('b', 'r', 'm') AND ty.typsend <> 0 AND ty.typreceive <> 0
              AND coalesce(el.typname, ty.typname) !~ '^reg'
              AND (el.oid IS NULL OR (el.oid < $2 AND el.typtype IN ('b', 'r', 'm') AND el.typsend <> 0 AND el.typreceive <> 0)) AS portable
       FROM pg_attribute a
       JOIN pg_type ty ON ty.oid = a.atttypid
       LEFT JOIN pg_type el ON ty.typcategory = 'A' AND el.oid = ty.typelem
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [quoteTable(t), FIRST_USER_OID],
  );
  const major = r.rows[0]?.major ?? 0;
  return { major, types: new Map(r.rows.map((c) => [c.name, c.portable ? c.type : null])) };
}

/** Binary when every side is the same major version and every copied column has the same portable type everywhere. */
export function chooseFormat(columns: string[], sides: ColumnTypes[]): CopyFormat {
  const [first, ...rest] = sides;
  if (!first) return 'text';
  for (const side of rest) if (side.major !== first.major) return 'text';
  for (const col of columns) {
    const type = first.types.get(col);
    if (type === undefined || type === null) return 'text';
    for (const side of rest) if (side.types.get(col) !== type) return 'text';
  }
  return 'binary';
}
