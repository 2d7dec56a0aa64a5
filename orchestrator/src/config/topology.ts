import type { Config, SyncConfig } from './types.js';

/** Every database of a sync. */
export function syncNodes(sync: SyncConfig): string[] {
  return [...sync.sources, ...sync.targets];
}

/** The nodes that receive a source's changes in a sync: every other node. */
export function receiversOf(sync: SyncConfig, source: string): string[] {
  return syncNodes(sync).filter((n) => n !== source);
}

/** The databases any sync of the job uses. */
export function usedDatabases(cfg: Config): string[] {
  const used = new Set<string>();
  for (const s of Object.values(cfg.syncs)) for (const n of syncNodes(s)) used.add(n);
  return Object.keys(cfg.databases).filter((d) => used.has(d));
}
