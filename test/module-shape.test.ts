// The code's shape, kept as it was made: no module in orchestrator/src over
// 400 lines, and no import cycle between its folders (each folder may use
// the ones below it: util < config < db < sync, triggers, install < ... < cli).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { packageRoot } from '../orchestrator/src/util/paths.js';

const src = path.join(packageRoot(), 'orchestrator', 'src');
const modules = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));

t.test('no module over 400 lines', async (t) => {
  for (const m of modules) {
    const lines = readFileSync(path.join(src, m), 'utf8').split('\n').length;
    if (lines > 400) t.fail(`${m} has ${lines} lines`);
  }
  t.pass(`${modules.length} modules checked`);
});

t.test('no import cycle between folders', async (t) => {
  const uses = new Map<string, Set<string>>();
  for (const m of modules) {
    const from = m.split(path.sep)[0]!;
    for (const [, spec] of readFileSync(path.join(src, m), 'utf8').matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
      const to = path.relative(src, path.resolve(path.dirname(path.join(src, m)), spec!)).split(path.sep)[0]!;
      if (to !== from) uses.set(from, (uses.get(from) ?? new Set()).add(to));
    }
  }
  // Depth-first search for a path back to where it started.
  const cycleFrom = (start: string): string[] | null => {
    const stack: string[][] = [[start]];
    const seen = new Set<string>();
    while (stack.length > 0) {
      const trail = stack.pop()!;
      for (const next of uses.get(trail.at(-1)!) ?? []) {
        if (next === start) return [...trail, next];
        if (!seen.has(next)) {
          seen.add(next);
          stack.push([...trail, next]);
        }
      }
    }
    return null;
  };
  for (const folder of uses.keys()) {
    const cycle = cycleFrom(folder);
    t.equal(cycle, null, cycle ? `cycle: ${cycle.join(' -> ')}` : `${folder} is in no cycle`);
  }
});
