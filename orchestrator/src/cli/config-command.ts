import { randomBytes } from 'node:crypto';
import { open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { setMessage, setSetting } from '../config/edit.js';
import { formatValue, getSetting, resolvedView } from '../config/view.js';
import { loadConfig } from '../config/load.js';
import { CapraError, errorMessage } from '../util/errors.js';

// `capra config get [KEY]` and `capra config set KEY VALUE`: the YAML file is
// the one source of truth; a set is validated whole before the file is
// replaced, and the daemon applies it on `capra reload`.

const USAGE = 'usage: capra config get [KEY] | capra config set KEY VALUE';

/** Replaces `file` by `text` at once (temp file in its directory + rename), keeping its mode. */
async function writeAtomically(file: string, text: string, original: string): Promise<void> {
  const { mode, uid, gid } = await stat(file);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode & 0o7777);
  try {
    try {
      await fh.writeFile(text);
      await fh.chmod(mode & 0o7777);
      if (process.getuid?.() === 0) await fh.chown(uid, gid);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if ((await readFile(file, 'utf8')) !== original) throw new CapraError(`config ${file}: changed by someone else meanwhile; nothing written, try again`);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function configCommand(configFile: string, args: string[], opts: { json: boolean; out: (line: string) => void }): Promise<number> {
  const [verb, ...rest] = args;
  const show = (v: unknown): string => (opts.json ? JSON.stringify(v) : formatValue(v));
  if (verb === 'get') {
    if (rest.length > 1) throw new CapraError(`unexpected argument ${rest[1]} for config get (${USAGE})`);
    const cfg = await loadConfig(configFile);
    const [key] = rest;
    if (key !== undefined) opts.out(show(getSetting(cfg, key)));
    else opts.out(opts.json ? JSON.stringify(resolvedView(cfg), null, 2) : stringify(resolvedView(cfg), { lineWidth: 0 }).trimEnd());
    return 0;
  }
  if (verb === 'set') {
    if (rest.length !== 2) throw new CapraError(`config set needs KEY and VALUE (${USAGE})`);
    const [key, value] = rest as [string, string];
    let file: string;
    let text: string;
    try {
      file = await realpath(path.resolve(configFile)); // a symlinked config: edit what it points to
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CapraError(`config ${configFile}: cannot read it: ${errorMessage(err)}`, { cause: err });
    }
    const r = setSetting(text, path.resolve(configFile), key, value);
    if (r.text !== text) await writeAtomically(file, r.text, text);
    opts.out(setMessage(key, r));
    return 0;
  }
  throw new CapraError(verb === undefined ? `config needs get or set (${USAGE})` : `unknown config command ${verb} (${USAGE})`);
}
