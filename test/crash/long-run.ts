// The long crash loop (not a test file; the suite runs test/integration/crash-loop.test.ts with 3
// kills): `npm run crash-loop -- --kills 20 [--seed N] [--acked-min N] [--acked-max N]`.
// The same load and oracle as the suite's crash loop; prints the figures and exits 0 if every
// check holds. Uses DATABASE_URL (a database the run may fill), or an embedded PostgreSQL in a
// temp dir.
import { crashLoop, DurableLoad } from '../helpers/durable-load.ts';
import { parseFlags, withDatabase } from '../helpers/long-run-database.ts';

const flags = parseFlags(process.argv.slice(2), ['kills', 'seed', 'acked-min', 'acked-max']);
const kills = Number(flags.get('kills') ?? 20);
const seed = Number(flags.get('seed') ?? 0xc0ffee);
const ackedPerLife: [number, number] = [Number(flags.get('acked-min') ?? 1000), Number(flags.get('acked-max') ?? 3000)];

const started = Date.now();
const load = new DurableLoad();
const r = await withDatabase((url) => crashLoop(load, url, { kills, ackedPerLife, seed, timeoutMs: 120_000, log: (l) => process.stdout.write(`${l}\n`) }));
const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0);
process.stdout.write([
  `crash loop: ${r.kills} kills (seed ${seed}), ${r.lives} broker lives, ${Math.round((Date.now() - started) / 1000)} s`,
  `acknowledged to publishers: ${r.ackedQos1} QoS 1 + ${r.ackedQos2} QoS 2 = ${r.ackedQos1 + r.ackedQos2}; QoS 0 sent: ${r.qos0Sent}`,
  `lost for persistent subscribers: ${sum(r.lost)} ${JSON.stringify(r.lost)}`,
  `QoS 2 delivered twice: ${sum(r.qos2Duplicates)} ${JSON.stringify(r.qos2Duplicates)}`,
  `QoS 1 delivered again (allowed): ${sum(r.qos1Redeliveries)} ${JSON.stringify(r.qos1Redeliveries)}; QoS 2 PUBLISH resends for a packet id awaiting PUBREL: ${r.qos2Resends}`,
  `problems: ${r.problems.length}${r.problems.slice(0, 20).map((p) => `\n  ${p}`).join('')}`,
  `broker error lines: ${r.errorLines.length}${r.errorLines.slice(0, 20).map((p) => `\n  ${p}`).join('')}`,
].join('\n') + '\n');
const ok = sum(r.lost) === 0 && sum(r.qos2Duplicates) === 0 && r.problems.length === 0 && r.errorLines.length === 0;
process.stdout.write(ok ? 'crash loop: every check passed\n' : 'crash loop: FAILED\n');
process.exit(ok ? 0 : 1);
