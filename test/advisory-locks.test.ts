// Every advisory lock Capra takes is registered in db/advisory-locks.ts: a
// job's lock, keyed by hashtext(job name) (any int4), has a class of its
// own, so no job name can collide with a fixed key; the fixed keys are
// distinct; and every lock taken in the SQL of extension/ and in
// orchestrator/src uses one of them.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { FIXED_LOCKS, FIXED_LOCK_CLASS, JOB_LOCK_CLASS } from '../orchestrator/src/db/advisory-locks.js';
import { packageRoot } from '../orchestrator/src/util/paths.js';

function files(dir: string, ext: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith(ext))
    .map((f) => path.join(dir, f));
}

t.test('the classes and keys are distinct', async (t) => {
  t.not(JOB_LOCK_CLASS, FIXED_LOCK_CLASS, "a job's lock has a class of its own");
  const keys = Object.values(FIXED_LOCKS);
  t.equal(new Set(keys).size, keys.length, 'every fixed key is distinct');
});

t.test('every lock in the SQL is a registered fixed key', async (t) => {
  const root = packageRoot();
  const calls = [...files(path.join(root, 'extension'), '.sql'), ...files(path.join(root, 'migrations'), '.sql')].flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/pg_(?:try_)?advisory_(?:xact_)?(?:un)?lock(?:_shared)?\s*\(([^)]*)\)/g)].map((m) => ({ f, args: m[1]! })),
  );
  t.ok(calls.length > 0, 'the SQL takes advisory locks');
  for (const { f, args } of calls) {
    const [cls, key] = args.split(',').map((a) => Number(a.trim()));
    t.equal(cls, FIXED_LOCK_CLASS, `${path.relative(root, f)}: (${args}) is in the fixed class`);
    t.ok((Object.values(FIXED_LOCKS) as number[]).includes(key!), `${path.relative(root, f)}: key ${key} is registered`);
  }
});

t.test('every lock in orchestrator/src goes through the registry', async (t) => {
  const root = packageRoot();
  for (const f of files(path.join(root, 'orchestrator', 'src'), '.ts')) {
    const text = readFileSync(f, 'utf8');
    const rel = path.relative(root, f);
    if (rel.endsWith('advisory-locks.ts') || rel.endsWith('side-migrations.ts')) continue; // the registry; postgres-migrations' own statements
    if (!/pg_(?:try_)?advisory_/.test(text)) continue;
    t.ok(/JOB_LOCK_CLASS|FIXED_LOCK_CLASS/.test(text), `${rel} takes its lock's class from db/advisory-locks.ts`);
    t.notMatch(text, /pg_(?:try_)?advisory_\w*\(\s*\d/, `${rel} writes no class or key as a literal`);
  }
});
