// boundedSnapshot against a model of transactions: it must see exactly what
// the old snapshot saw plus what the new one sees below the bound.
import t from 'tap';
import { type Snap, boundedSnapshot, formatSnapshot, isVisible, parseSnapshot } from '../orchestrator/src/sync/snapshot.js';

t.test('parse and format round-trip', async (t) => {
  for (const s of ['10:20:', '10:20:10,12,15', '5:5:']) t.equal(formatSnapshot(parseSnapshot(s)), s);
  t.throws(() => parseSnapshot('garbage'));
});

/** A snapshot of a world where xids 1..n started in order and `done` have finished. */
function snapOf(n: number, done: Set<number>): Snap {
  const running = [...Array(n).keys()].map((i) => i + 1).filter((x) => !done.has(x));
  const xmax = BigInt(n + 1);
  const xip = running.map(BigInt);
  return { xmin: xip[0] ?? xmax, xmax, xip };
}

t.test('bounded snapshots between random real ones', async (t) => {
  let seed = 42;
  const bad: string[] = [];
  const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 500; round++) {
    // Start xids, finish some (in random order), take old; start more, finish more, take cur.
    const n1 = 1 + Math.floor(rand() * 12);
    const done = new Set<number>();
    for (let x = 1; x <= n1; x++) if (rand() < 0.6) done.add(x);
    const old = snapOf(n1, done);
    const n2 = n1 + Math.floor(rand() * 12);
    for (let x = 1; x <= n2; x++) if (rand() < 0.6) done.add(x);
    const cur = snapOf(n2, done);
    const bound = BigInt(1 + Math.floor(rand() * (n2 + 2)));
    const mid = boundedSnapshot(old, cur, bound);
    for (let x = 1n; x <= BigInt(n2 + 2); x++) {
      const want = isVisible(old, x) || (x < bound && isVisible(cur, x));
      if (isVisible(mid, x) !== want) bad.push(`xid ${x}: old ${formatSnapshot(old)} cur ${formatSnapshot(cur)} bound ${bound} -> ${formatSnapshot(mid)}`);
    }
    const wellFormed = mid.xip.every((x, i) => i === 0 || mid.xip[i - 1]! < x) && (mid.xip.length === 0 || mid.xmin === mid.xip[0]);
    if (!wellFormed) bad.push(`malformed ${formatSnapshot(mid)}`);
  }
  t.same(bad.slice(0, 5), [], '500 random cases: visibility is exactly old + (cur below the bound)');
});
