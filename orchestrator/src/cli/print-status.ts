import { progressLine } from '../clone/watch.js';
import type { Status } from '../status/status.js';

function ago(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

const num = (n: number | null): string => (n === null ? '?' : String(n));

/** The human form of `capra status`. */
export function formatStatus(st: Status, now = Date.now()): string {
  const lines: string[] = [];
  lines.push(
    st.daemon.running
      ? `job ${st.job}: daemon running, pid ${st.daemon.pid} (pidfile ${st.daemon.pidfile})`
      : `job ${st.job}: daemon NOT running (pidfile ${st.daemon.pidfile})`,
  );
  const here = st.daemon.running ? `${st.daemon.pid}@` : null;
  if (st.daemon.activeHolder === null) lines.push('no daemon of this job is active (none holds the job lock)');
  else if (!here || !st.daemon.activeHolder.startsWith(here))
    lines.push(`active daemon: ${st.daemon.activeHolder}${st.daemon.running ? " (this host's daemon stands by)" : ''}`);
  if (!st.metadata.reachable) lines.push(`metadata database unreachable: ${st.metadata.error}`);
  for (const s of st.syncs) {
    lines.push(
      `sync ${s.name}: ${s.state}${s.paused ? ` since ${s.paused.at}${s.paused.by ? ` by ${s.paused.by}` : ''} (capra resume applies its backlog)` : ''}, last ok ${ago(s.lastOkAt, now)}, pending ${num(s.pendingRows)} rows, lag ${num(s.lagSeconds)}s, conflicts ${s.conflicts}${s.conflicts > 0 ? ` (${s.conflictsLastHour} in the last hour; capra conflicts lists them)` : ''}`,
    );
    for (const l of s.lanes) {
      let line = `  ${l.source} -> ${l.target}: ${l.state}, last run ${ago(l.lastRunAt, now)}, pending ${num(l.pendingRows)}, lag ${num(l.lagSeconds)}s, applied ${l.rowsApplied}`;
      if (l.error) line += `\n    error${l.errorTable ? ` (table ${l.errorTable})` : ''}: ${l.error}`;
      if (l.replicaRole === false) {
        line += `\n    note: ${l.target} refuses session_replication_role = replica for this role, so its own triggers and foreign keys fire for applied rows (grant SET on it, PostgreSQL 15+, or use a superuser)`;
      }
      lines.push(line);
    }
    for (const shape of s.shapes ?? []) lines.push(`  table ${shape}`);
    for (const c of s.compare ?? []) {
      const diff = c.missing + c.extra + c.different;
      lines.push(
        `  compare ${c.table}: ${c.reference} -> ${c.node}: ${diff === 0 ? 'agree' : `${diff} row(s) differ (${c.missing} missing, ${c.extra} extra, ${c.different} different)`}, ${c.rows} rows, ${ago(c.ranAt, now)}`,
      );
    }
  }
  for (const c of st.clones) {
    lines.push(c.state === 'failed' ? `clone ${c.id}: failed: ${c.error ?? 'no reason recorded'}` : progressLine(c));
  }
  if (st.unanswered.length > 0) lines.push(`no answer from: ${st.unanswered.map((u) => u.node).join(', ')}`);
  if (!st.healthy) lines.push(`unhealthy:\n${st.problems.map((p) => `  ${p}`).join('\n')}`);
  return lines.join('\n');
}
