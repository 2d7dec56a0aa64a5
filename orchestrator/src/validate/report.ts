/**
 * What `capra validate` finds: problems (each about one node, and a table
 * when there is one), what --fix did, and the delta backlog, which is
 * reported but is no problem by itself (see backlog.ts).
 */
export interface Problem {
  node: string;
  sync?: string;
  table?: string;
  /** What is wrong, one line. */
  what: string;
  /** What --fix does about it; undefined when it cannot fix it (the operator must). */
  fix?: string;
}

export interface Fixed {
  node: string;
  sync?: string;
  table?: string;
  /** What --fix did. */
  did: string;
}

export interface Backlog {
  sync: string;
  source: string;
  target: string;
  /** Changes captured on the source that the target has not applied; null when unknown (why: error). */
  rows: number | null;
  /** Age in seconds of the oldest of them. */
  oldestSeconds: number | null;
  error?: string;
}

export interface ValidateReport {
  ok: boolean;
  problems: Problem[];
  fixed: Fixed[];
  backlog: Backlog[];
}

/** Where a problem or fix is, as its line names it: node, sync, table. */
export function place(p: { node: string; sync?: string; table?: string }): string {
  return [`node ${p.node}`, p.sync === undefined ? '' : `sync ${p.sync}`, p.table === undefined ? '' : `table ${p.table}`].filter(Boolean).join(', ');
}
