// The built-in conflict rules as pure functions: exact winners, ties, and
// random's replay from its logged seed.
import t from 'tap';
import { type Version, firstListed, latest, randomPick } from '../orchestrator/src/sync/conflict.js';

const v = (db: string, us: bigint): Version => ({ db, changedUs: us, changedAt: '', clock: 'change', row: null });

t.test('latest: the most recent change; equal times go to the name that sorts first', async (t) => {
  t.equal(latest([v('a', 10n), v('b', 20n), v('c', 15n)]), 'b');
  t.equal(latest([v('c', 20n), v('b', 20n), v('a', 5n)]), 'b', 'a tie between b and c goes to b');
  t.equal(latest([v('b', 20n), v('c', 20n)]), 'b', 'whatever the order shown');
});

t.test('priority list: the first listed that changed the key; unlisted ones lose, then latest', async (t) => {
  t.equal(firstListed(['c', 'a'], [v('a', 30n), v('b', 99n), v('c', 1n)]), 'c');
  t.equal(firstListed(['c', 'a'], [v('a', 30n), v('b', 99n)]), 'a', 'b is not listed: a wins though older');
  t.equal(firstListed(['x'], [v('a', 30n), v('b', 99n)]), 'b', 'nobody listed changed it: latest');
});

t.test('random: candidates in name order, winner = candidates[seed % n]', async (t) => {
  const vs = [v('c', 1n), v('a', 2n), v('b', 3n)];
  t.same(randomPick(vs, 0), { db: 'a', candidates: ['a', 'b', 'c'] });
  t.equal(randomPick(vs, 7).db, 'b');
  t.equal(randomPick(vs, 7).db, randomPick([...vs].reverse(), 7).db, 'the same seed picks the same winner whatever the order shown');
});
