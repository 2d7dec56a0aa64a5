import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { CapraError, errorMessage } from '../util/errors.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

/** Where pidfiles and logs go unless the config or environment says otherwise: user-writable. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME || path.join(homedir(), '.local', 'state');
  return path.join(base, 'capra');
}

export function parseConfigText(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new CapraError(`config ${file}: not valid YAML: ${errorMessage(err).split('\n')[0]}`, { cause: err });
  }
  const state = defaultStateDir(env);
  return validateConfig(raw, file, { runDir: state, logDir: state }, env);
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new CapraError(`config ${file}: cannot read it: ${errorMessage(err)}`, { cause: err });
  }
  return parseConfigText(text, abs, env);
}
