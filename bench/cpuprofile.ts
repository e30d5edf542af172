// Summarize a V8 .cpuprofile (from `node --cpu-prof`): self and inclusive time per function,
// heaviest first. Usage: npx tsx bench/cpuprofile.ts FILE.cpuprofile [--top 40] [--filter text]
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
if (!file) {
  console.error('usage: npx tsx bench/cpuprofile.ts FILE.cpuprofile [--top N] [--filter TEXT]');
  process.exit(2);
}
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const top = Number(flag('--top') ?? 40);
const filter = flag('--filter');

const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const label = (n: ProfileNode): string => {
  const f = n.callFrame;
  const where = f.url ? `${path.relative(process.cwd(), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};

const self = new Map<string, number>();
const total = new Map<string, number>();
let sum = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  sum += dt;
  let n = byId.get(prof.samples[i]!);
  if (!n) continue;
  const l = label(n);
  self.set(l, (self.get(l) ?? 0) + dt);
  const seen = new Set<string>();
  while (n) {
    const k = label(n);
    if (!seen.has(k)) {
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
    const p = parent.get(n.id);
    n = p === undefined ? undefined : byId.get(p);
  }
}
const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
const busy = sum - idle;
console.log(`${path.basename(file)}: ${(sum / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy`);
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (% of busy time)`);
  const rows = [...m].filter(([k]) => !k.startsWith('(idle)') && (!filter || k.includes(filter))).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, v] of rows) console.log(`${((100 * v) / busy).toFixed(1).padStart(6)}%  ${k}`);
};
show('self', self);
show('inclusive', total);
