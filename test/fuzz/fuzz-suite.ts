// The body of the wire-fuzz test files (one file per transport × protocol version, so each fits
// the runner's per-file time limit and the four run in parallel): start a broker on a fresh
// database, fuzz it with `mutatedPackets` mutated packets while the well-behaved client runs, then
// check: the broker is alive and still answers, the client was answered throughout, no log line
// at level error/fatal, and its RSS comes back near its baseline.
//
// Environment: TERN_FUZZ_SEED (a run's seed, decimal or 0x hex), TERN_FUZZ_PACKETS (mutated
// packets per file), TERN_FUZZ_REPLAY (comma-separated connection indexes: send only those).
// On failure the seed and the connection indexes around the failure are printed; replay one with
//   TERN_FUZZ_SEED=<seed> TERN_FUZZ_REPLAY=<index> node scripts/run-tests.mjs <this file>
// and print its bytes with `node --import tsx test/fuzz/show.ts <version> <seed> <index>`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../helpers/broker-process.ts';
import { cleanUp, describeLine, errorLines, fuzz, openAt, rssKiB, type FuzzStats, type Transport } from './fuzz-run.ts';
import type { Version } from './mutate.ts';

/** Default mutated packets per file: 4 files × 25,000 = 100,000 in `npm test`. */
export const DEFAULT_PACKETS = 25_000;
/** RSS after the run may exceed the baseline by at most this (generous: V8 keeps some heap it grew). */
export const RSS_SLACK_KIB = 150 * 1024;

function seedFrom(env: string | undefined, fallback: number): number {
  if (!env) return fallback;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`TERN_FUZZ_SEED: not a number: ${env}`);
  return n >>> 0;
}

export function summary(s: FuzzStats, transport: Transport, version: Version, seed: number): string {
  return `${transport} v${version === 4 ? '3.1.1' : '5'} seed 0x${seed.toString(16)}: ${s.mutated} mutated of ${s.packets} packets, ` +
    `${s.connections} connections (${s.closedByBroker} closed by the broker, ${s.answered} answered PINGREQ), ${(s.bytes / 1048576).toFixed(1)} MiB, ` +
    `${s.ms} ms; probe ${s.probeRoundTrips} QoS 1 round trips, slowest ${s.probeMaxMs} ms`;
}

export function fuzzFile(transport: Transport, version: Version, defaultSeed: number): void {
  const seed = seedFrom(process.env['TERN_FUZZ_SEED'], defaultSeed);
  const packets = Number(process.env['TERN_FUZZ_PACKETS'] ?? DEFAULT_PACKETS);
  const only = process.env['TERN_FUZZ_REPLAY']?.split(',').map((s) => Number(s.trim()));
  test(`wire fuzz ${transport} MQTT ${version === 4 ? '3.1.1' : '5.0'}: ${packets} mutated packets (seed 0x${seed.toString(16)})`, async (t) => {
    const broker = await startBroker();
    try {
      const baseline = rssKiB(broker.proc.pid!);
      const stats = await fuzz(broker, { transport, version, seed, mutatedPackets: packets, only, lanes: 8 });
      const line = summary(stats, transport, version, seed);
      t.diagnostic(line);
      const where = (): string => {
        const recent = stats.recent.slice(-24).map((r) => r.index).join(',');
        return `\n  seed 0x${seed.toString(16)} (TERN_FUZZ_SEED=${seed}); last connections: ${recent}\n  ${line}\n  ` +
          `replay: TERN_FUZZ_SEED=${seed} TERN_FUZZ_REPLAY=<indexes> node scripts/run-tests.mjs test/fuzz/wire-fuzz-${transport}-v${version === 4 ? '311' : '5'}.test.ts`;
      };
      assert.equal(broker.proc.exitCode, null, `the broker exited${where()}`);
      assert.equal(broker.proc.signalCode, null, `the broker died${where()}`);
      assert.deepEqual(stats.probeFailures, [], `the well-behaved client was not answered${where()}`);
      assert.ok(stats.probeRoundTrips > 0, 'the probe completed round trips');
      assert.equal(stats.notClosed, 0, `connections the broker did not close after ours closed${where()}`);
      if (!only) assert.ok(stats.mutated >= packets, `sent ${stats.mutated} mutated packets`);

      // Internal errors: any error/fatal line fails the run
      const internal = errorLines(broker.logs).map((l) => `${describeLine(l)}; open fuzz connections: ${openAt(stats, Number(l['time'])).join(',')}`);
      assert.deepEqual(internal.slice(0, 20), [], `the broker logged ${internal.length} internal errors${where()}`);

      // Memory back near the baseline once the fuzz's sessions and retained messages are gone
      // (poll: the broker frees what closed connections held as its garbage collector runs)
      const cleaned = await cleanUp(broker, broker.databaseUrl!);
      let rss = rssKiB(broker.proc.pid!);
      const deadline = Date.now() + 20_000;
      while (rss > baseline + RSS_SLACK_KIB && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        rss = rssKiB(broker.proc.pid!);
      }
      t.diagnostic(`broker RSS: ${Math.round(baseline / 1024)} MiB at start, ${Math.round(rss / 1024)} MiB after the run and the removal of ${cleaned.sessions} sessions and ${cleaned.retained} retained messages`);
      assert.ok(rss <= baseline + RSS_SLACK_KIB, `broker RSS ${Math.round(rss / 1024)} MiB, baseline ${Math.round(baseline / 1024)} MiB${where()}`);
    } finally {
      await broker.stop();
    }
  });
}
