// Print what fuzz connection <index> of a run with <seed> sends, as hex (one line per chunk).
// Usage: node --import tsx test/fuzz/show.ts <4|5> <seed> <index> [<index> ...]
import { connectionScript } from './mutate.ts';

const [version, seed, ...indexes] = process.argv.slice(2);
if (!version || !seed || indexes.length === 0 || (version !== '4' && version !== '5')) {
  process.stderr.write('usage: node --import tsx test/fuzz/show.ts <4|5> <seed> <index> [<index> ...]\n');
  process.exit(2);
}
for (const i of indexes) {
  const s = connectionScript(Number(seed) >>> 0, Number(i), Number(version) as 4 | 5);
  process.stdout.write(`# connection ${i}: ${s.shape}, ${s.packets} packets (${s.mutated} mutated), ${s.interactive ? 'waits for PINGRESP' : 'closes at once'}\n`);
  for (const c of s.chunks) process.stdout.write(`${c.toString('hex')}\n`);
}
