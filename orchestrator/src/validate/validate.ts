import type { Config, SyncConfig } from '../config/types.js';
import { receiversOf, syncNodes } from '../config/topology.js';
import type { Connections } from '../db/connections.js';
import { tableLabel } from '../db/ident.js';
import { sideInstalled } from '../db/schema-side.js';
import { forgetSync, registerConsumers, trackTable, trackedTables } from '../triggers/consumers.js';
import { type DdlOptions, addCaptureTriggers, defaultDdlOptions } from '../triggers/ddl.js';
import { type TrackedTable, resolveTables } from '../triggers/resolve.js';
import { nodeDdl, untrackOne } from '../triggers/sync-triggers.js';
import { errorMessage } from '../util/errors.js';
import { syncBacklog } from './backlog.js';
import { captureFaults, strayRegistrations } from './capture-check.js';
import { migrationProblems } from './migration-level.js';
import { orphanConsumers, orphanProblem } from './orphans.js';
import type { Fixed, Problem, ValidateReport } from './report.js';
import { keyProblems, shapeProblems, tableShapes } from './shapes.js';

/**
 * `capra validate`: compares every node of the job's syncs with what
 * install and add-triggers make, and with the config (see report.ts for
 * what it returns). With `fix`, it repairs what it can through the code
 * that made it in the first place (ddl.ts under its lock_timeout and
 * retries, consumers.ts), then checks again: what it reports then is what
 * is still wrong.
 */
export interface ValidateOptions {
  syncs: SyncConfig[];
  /** Also look for consumers no sync owns (when every sync is validated, not a chosen few). */
  orphans: boolean;
  fix: boolean;
  ddl?: Partial<DdlOptions>;
}

/** A problem, and how --fix repairs it; findings with the same key share one repair. */
interface Finding {
  problem: Problem;
  key?: string;
  repair?: () => Promise<string>;
}

export async function validate(cfg: Config, conns: Connections, opts: ValidateOptions): Promise<ValidateReport> {
  let findings = await check(cfg, conns, opts);
  const fixed: Fixed[] = [];
  const failed: Problem[] = [];
  if (opts.fix) {
    const done = new Set<string>();
    for (const f of findings) {
      if (!f.repair || !f.key || done.has(f.key)) continue;
      done.add(f.key);
      const { node, sync, table } = f.problem;
      try {
        fixed.push({ node, sync, table, did: await f.repair() });
      } catch (err) {
        failed.push({ node, sync, table, what: `--fix failed: ${errorMessage(err)}` });
      }
    }
    if (fixed.length > 0 || failed.length > 0) findings = await check(cfg, conns, opts);
  }
  const problems = [...failed, ...findings.map((f) => f.problem)];
  const backlog = (await Promise.all(opts.syncs.map((s) => syncBacklog(conns, cfg.name, s)))).flat();
  return { ok: problems.length === 0, problems, fixed, backlog };
}

async function check(cfg: Config, conns: Connections, opts: ValidateOptions): Promise<Finding[]> {
  const nodes = [...new Set(opts.syncs.flatMap(syncNodes))];
  const levels = await migrationProblems(conns, nodes);
  const out: Finding[] = levels.map((problem) => ({ problem }));
  // A node not installed, unreachable or at another level would fail or mislead every other check.
  const bad = new Set(levels.map((p) => p.node));
  for (const sync of opts.syncs) out.push(...(await checkSync(cfg, conns, sync, bad, opts)));
  if (opts.orphans) {
    for (const node of Object.keys(cfg.databases)) {
      if (bad.has(node)) continue;
      out.push(...(await checkOrphans(cfg, conns, node).catch(() => [])));
    }
  }
  return out;
}

async function checkSync(cfg: Config, conns: Connections, sync: SyncConfig, bad: Set<string>, opts: ValidateOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  // The key of each table on each source, resolved as add-triggers does; the first source's is the one it uses.
  const resolved = new Map<string, TrackedTable[]>();
  for (const node of sync.sources) {
    if (bad.has(node)) continue;
    try {
      resolved.set(node, await conns.with(node, (c) => resolveTables(c, sync.tables, node, sync.sources.length > 1)));
    } catch (err) {
      out.push({ problem: { node, sync: sync.name, what: errorMessage(err) } });
    }
  }
  const first = sync.sources[0]!;
  const tables = resolved.get(first);
  if (!tables) return out;
  const refShapes = await conns.with(first, (c) => tableShapes(c, tables));
  for (const node of syncNodes(sync)) {
    if (node === first || bad.has(node)) continue;
    const shapes = await conns.with(node, (c) => tableShapes(c, tables, sync.targets.includes(node)));
    const found = shapeProblems(sync.name, { node: first, shapes: refShapes }, node, shapes, tables);
    const keys = resolved.get(node);
    if (keys) found.push(...keyProblems(sync.name, { node: first, tables }, node, keys));
    out.push(...found.map((problem) => ({ problem })));
  }
  const ddl: DdlOptions = { ...defaultDdlOptions, ...opts.ddl };
  for (const node of sync.sources) {
    if (!bad.has(node)) out.push(...(await checkCapture(cfg, conns, sync, node, tables, nodeDdl(ddl, conns, node))));
  }
  return out;
}

async function checkCapture(cfg: Config, conns: Connections, sync: SyncConfig, node: string, tables: TrackedTable[], ddl: DdlOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const { faults, strays } = await conns.with(node, async (c) => {
    const registered = await trackedTables(c, cfg.name, sync.name);
    return { faults: await captureFaults(c, tables, registered), strays: strayRegistrations(tables, registered) };
  });
  for (const { table: t, mode, faults: list } of faults) {
    const fix = `make its capture triggers and functions again as add-triggers does, with key (${t.keyCols.join(', ')})`;
    const repair = (): Promise<string> =>
      conns.with(node, async (c) => {
        await addCaptureTriggers(c, t, t.keyCols, mode, ddl, () => trackTable(c, cfg.name, sync.name, t, t.keyCols));
        return `made its capture triggers and functions again, key (${t.keyCols.join(', ')})`;
      });
    for (const what of list)
      out.push({ problem: { node, sync: sync.name, table: tableLabel(t), what, fix }, key: `capture|${node}|${sync.name}|${tableLabel(t)}`, repair });
  }
  for (const row of strays) {
    const table = row.table == null ? `relid ${row.relid}` : tableLabel(row);
    out.push({
      problem: {
        node,
        sync: sync.name,
        table,
        what: row.table == null ? 'registered for capture, but the table no longer exists' : 'captured for this sync, which no longer selects it',
        fix: 'stop capturing it for this sync as add-triggers does (its triggers go unless another sync captures it)',
      },
      key: `stray|${node}|${sync.name}|${row.relid}`,
      repair: () =>
        conns.with(node, async (c) => {
          await untrackOne(c, cfg.name, sync.name, row, ddl);
          return 'stopped capturing it for this sync';
        }),
    });
  }
  return out;
}

async function checkOrphans(cfg: Config, conns: Connections, node: string): Promise<Finding[]> {
  const orphans = await conns.with(node, async (c) => ((await sideInstalled(c, 'node')) ? orphanConsumers(c, cfg, node) : []));
  return orphans.map((o) => ({
    problem: orphanProblem(node, o),
    key: `orphan|${node}|${o.sync}`,
    repair: () =>
      conns.with(node, async (c) => {
        const sync = cfg.syncs[o.sync];
        if (o.why === 'target' && sync) {
          await registerConsumers(c, cfg.name, o.sync, receiversOf(sync, node), sync.kick.notify);
          return `re-registered the consumers of sync ${o.sync} (${receiversOf(sync, node).join(', ')})`;
        }
        const ddl = nodeDdl(defaultDdlOptions, conns, node);
        for (const row of await trackedTables(c, cfg.name, o.sync)) {
          await untrackOne(c, cfg.name, o.sync, row, ddl);
        }
        if (o.why === 'gone') {
          await forgetSync(c, cfg.name, o.sync);
          return `forgot sync ${o.sync} here: its consumers, positions and the capture of its tables`;
        }
        // Still a target of the sync: its applied positions stay; only what a source has goes.
        await registerConsumers(c, cfg.name, o.sync, [], false);
        return `removed the consumers of sync ${o.sync} here and the capture of its tables`;
      }),
  }));
}
