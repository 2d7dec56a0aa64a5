import { type Row, median } from './table.js';
import type { TpsFigure, WriterConfig } from './writers.js';

/**
 * The writer phase's rows of the bench table: per client count, pinned
 * first (bench/pinning.ts) then unpinned, TPS with no triggers, with the
 * triggers on and the daemon stopped (capture only) and with the daemon
 * running; then, where the polling runs were made, polling TPS and the kick
 * cost. Targets: issue 13's on the pinned rows at 4 clients (capture only
 * >= 90%, daemon >= 80% of no triggers), issue 6's on the unpinned daemon
 * row, issue 6's kick cost.
 */
export function writerRows(tps: TpsFigure[], clientCounts: number[], pollClients: number[]): Row[] {
  const best = (config: WriterConfig, clients: number, pinned: boolean): number | null =>
    tps.find((f) => f.config === config && f.clients === clients && f.pinned === pinned)?.best ?? null;
  const share = (x: number | null, base: number | null): number | null => (x !== null && base ? x / base : null);
  const pins = tps.some((f) => f.pinned) ? [true, false] : [false];
  const where = (pinned: boolean): string => (pinned ? 'pinned' : 'unpinned');
  const rows: Row[] = [];
  for (const clients of clientCounts) {
    for (const pinned of pins) {
      const none = best('none', clients, pinned);
      rows.push({ metric: `pgbench, ${clients} clients, ${where(pinned)}, no triggers`, unit: 'TPS', capra: none, bucardo: none, better: 'none' });
      const vsNone = (metric: string, mode: 'capture' | 'kick', goal: number | null): void => {
        const capra = best(`Capra ${mode}`, clients, pinned);
        const capraShare = share(capra, none);
        rows.push({
          metric: `pgbench, ${clients} clients, ${where(pinned)}, ${metric}`,
          unit: 'TPS',
          capra,
          bucardo: best(`Bucardo ${mode}`, clients, pinned),
          capraShare,
          bucardoShare: share(best(`Bucardo ${mode}`, clients, pinned), none),
          better: 'higher',
          ...(clients === 4 && goal !== null ? { target: `Capra >= ${goal * 100}% of no triggers`, met: capraShare === null ? null : capraShare >= goal } : {}),
        });
      };
      vsNone('capture only (triggers, no daemon)', 'capture', pinned ? 0.9 : null);
      vsNone('triggers + daemon', 'kick', pinned ? 0.8 : 0.9);
    }
  }
  const pollPinned = tps.some((f) => f.config.endsWith('poll') && f.pinned);
  for (const clients of pollClients) {
    const none = best('none', clients, pollPinned);
    const [cp, bp] = [best('Capra poll', clients, pollPinned), best('Bucardo poll', clients, pollPinned)];
    rows.push({
      metric: `pgbench, ${clients} clients, ${where(pollPinned)}, triggers + daemon polling 1/s`,
      unit: 'TPS',
      capra: cp,
      bucardo: bp,
      capraShare: share(cp, none),
      bucardoShare: share(bp, none),
      better: 'higher',
    });
    const cost = (kick: number | null, poll: number | null): number | null => (kick !== null && poll ? (1 - kick / poll) * 100 : null);
    const capraCost = cost(best('Capra kick', clients, pollPinned), cp);
    rows.push({
      metric: `kick cost, ${clients} clients, ${where(pollPinned)} (1 - kicked / polling TPS)`,
      unit: '%',
      capra: capraCost,
      bucardo: cost(best('Bucardo kick', clients, pollPinned), bp),
      better: 'lower',
      target: '<= 5%',
      met: capraCost === null ? null : capraCost <= 5,
    });
  }
  return rows;
}

/** One line per writer figure: TPS of each round and the target's catch-up after each. */
export function writerRunLines(tps: TpsFigure[]): string[] {
  return tps.map((f) => {
    const catchUp =
      f.config === 'none'
        ? ''
        : `; caught up after ${f.catchUpSeconds.map((s) => (s === null ? 'never (the target differs)' : `${s.toFixed(1)} s`)).join(', ')}`;
    const label = `${f.config}${f.pinned ? ', pinned' : ''}`;
    return `  ${label.padEnd(23)} ${String(f.clients).padStart(2)} clients: ${f.runs.map((r) => Math.round(r)).join(', ')}${catchUp}`;
  });
}

/** Each round's kick cost (1 - kicked / polling TPS, in %) of one tool at `clients`, from the kick-pairs runs; [] without them. */
export function pairedKickCosts(tps: TpsFigure[], tool: 'Capra' | 'Bucardo', clients: number): number[] {
  const pick = (mode: 'kick' | 'poll'): TpsFigure | undefined => tps.find((f) => f.config === `${tool} ${mode}` && f.clients === clients);
  const [kick, poll] = [pick('kick'), pick('poll')];
  if (!kick || !poll) return [];
  return kick.runs.flatMap((k, i) => (poll.runs[i] ? [(1 - k / poll.runs[i]!) * 100] : []));
}

/**
 * `--only kick`'s rows: per client count, the median over the rounds of
 * each round's kick cost (its kicked run against the polling run made right
 * before or after it), the goal of issue 13 on Capra's.
 */
export function kickPairRows(tps: TpsFigure[], pollClients: number[]): Row[] {
  const pinned = tps.some((f) => f.pinned);
  return pollClients.map((clients) => {
    const [capra, bucardo] = (['Capra', 'Bucardo'] as const).map((tool) => pairedKickCosts(tps, tool, clients));
    const rounds = capra!.length;
    const capraCost = rounds > 0 ? median(capra!) : null;
    return {
      metric: `kick cost, ${clients} clients, ${pinned ? 'pinned' : 'unpinned'}, median of ${rounds} paired rounds (1 - kicked / polling TPS)`,
      unit: '%',
      capra: capraCost,
      bucardo: bucardo!.length > 0 ? median(bucardo!) : null,
      better: 'lower',
      target: '<= 5%',
      met: capraCost === null ? null : capraCost <= 5,
    };
  });
}
