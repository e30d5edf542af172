// The long wire fuzz (not a test file; the suite runs the *.test.ts ones):
// `npm run fuzz -- --packets 1000000 [--seed N] [--lanes N]`. One broker on
// one database takes fuzz connections over TCP and WebSocket, MQTT 3.1.1 and 5.0 at once (a
// quarter of the mutated packets each), with a well-behaved client per combination; then the same
// checks as the suite's fuzz files (alive, client answered, no internal error, RSS near baseline).
// Exit code 0 if every check holds. Uses DATABASE_URL, or an embedded PostgreSQL in a temp dir.
import { startBroker } from '../helpers/broker-process.ts';
import { parseFlags, withDatabase } from '../helpers/long-run-database.ts';
import { cleanUp, describeLine, errorLines, fuzz, openAt, rssKiB, type FuzzStats, type Transport } from './fuzz-run.ts';
import { RSS_SLACK_KIB, summary } from './fuzz-suite.ts';
import type { Version } from './mutate.ts';

const flags = parseFlags(process.argv.slice(2), ['packets', 'seed', 'lanes']);
const total = Number(flags.get('packets') ?? 1_000_000);
const baseSeed = Number(flags.get('seed') ?? 0x5eed0000) >>> 0;
const lanes = Number(flags.get('lanes') ?? 4);
const combos: Array<{ transport: Transport; version: Version; seed: number }> = [
  { transport: 'tcp', version: 4, seed: (baseSeed + 0x104) >>> 0 },
  { transport: 'tcp', version: 5, seed: (baseSeed + 0x105) >>> 0 },
  { transport: 'ws', version: 4, seed: (baseSeed + 0x204) >>> 0 },
  { transport: 'ws', version: 5, seed: (baseSeed + 0x205) >>> 0 },
];

const problems: string[] = [];
await withDatabase(async (databaseUrl) => {
  const broker = await startBroker([], {}, { databaseUrl });
  try {
    const pid = broker.proc.pid!;
    const baseline = rssKiB(pid);
    let peak = baseline;
    const started = Date.now();
    const all: FuzzStats[] = [];
    const progress = (): void => {
      const rss = rssKiB(pid);
      peak = Math.max(peak, rss);
      const mutated = all.reduce((n, s) => n + s.mutated, 0);
      process.stdout.write(`${Math.round((Date.now() - started) / 1000)} s: ${mutated} mutated packets, broker RSS ${Math.round(rss / 1024)} MiB\n`);
    };
    const timer = setInterval(progress, 10_000);
    const results = await Promise.all(combos.map((c) => fuzz(broker, {
      ...c, mutatedPackets: Math.ceil(total / combos.length), lanes,
      progress: (s) => { if (!all.includes(s)) all.push(s); },
    })));
    clearInterval(timer);
    for (const [i, s] of results.entries()) {
      const c = combos[i]!;
      process.stdout.write(`${summary(s, c.transport, c.version, c.seed)}\n`);
      for (const f of s.probeFailures) problems.push(`${c.transport} v${c.version} well-behaved client: ${f}`);
      if (s.notClosed > 0) problems.push(`${c.transport} v${c.version}: ${s.notClosed} connections not closed by the broker after ours closed`);
    }
    if (broker.proc.exitCode !== null || broker.proc.signalCode !== null) problems.push('the broker died');
    for (const l of errorLines(broker.logs)) {
      const near = results.map((s, i) => `${combos[i]!.transport} v${combos[i]!.version}: ${openAt(s, Number(l['time'])).join(',')}`).join('; ');
      problems.push(`internal error: ${describeLine(l)}; open fuzz connections ${near}`);
    }
    const cleaned = await cleanUp(broker, broker.databaseUrl!);
    let rss = rssKiB(pid);
    const deadline = Date.now() + 30_000;
    while (rss > baseline + RSS_SLACK_KIB && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      rss = rssKiB(pid);
    }
    process.stdout.write(`broker RSS: ${Math.round(baseline / 1024)} MiB at start, peak seen ${Math.round(peak / 1024)} MiB, ${Math.round(rss / 1024)} MiB after the run and the removal of ${cleaned.sessions} sessions and ${cleaned.retained} retained messages; ${Math.round((Date.now() - started) / 1000)} s in all\n`);
    if (rss > baseline + RSS_SLACK_KIB) problems.push(`broker RSS ${Math.round(rss / 1024)} MiB did not come back near its baseline of ${Math.round(baseline / 1024)} MiB`);
  } finally {
    await broker.stop();
  }
});
for (const p of problems.slice(0, 30)) process.stdout.write(`FAIL ${p}\n`);
process.stdout.write(problems.length === 0 ? 'fuzz: every check passed\n' : `fuzz: ${problems.length} problems (seeds above; replay one connection with TERN_FUZZ_SEED/TERN_FUZZ_REPLAY, see test/fuzz/fuzz-suite.ts)\n`);
process.exit(problems.length === 0 ? 0 : 1);
