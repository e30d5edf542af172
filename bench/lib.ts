// Benchmark plumbing: start Tern from its compiled build (what `npm start` runs), and small
// statistics helpers. The benchmark's MQTT peers are test/helpers/raw-peer.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PeerTarget } from '../test/helpers/raw-peer.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A broker on loopback: MQTT over TCP on `tcpPort`, over WebSocket at `ws://127.0.0.1:wsPort/mqtt`. */
export function loopbackTarget(tcpPort: number, wsPort = tcpPort, wsPath = '/mqtt'): PeerTarget {
  return { host: '127.0.0.1', mqttPort: tcpPort, wsUrl: () => `ws://127.0.0.1:${wsPort}${wsPath}` };
}

export interface RunningBroker {
  proc: ChildProcess;
  httpPort: number;
  mqttPort: number;
  /** Where raw peers connect. */
  target: PeerTarget;
  /** Milliseconds from spawn to the "listening" log line. */
  startMs: number;
  stop(): Promise<void>;
}

let built = false;

/** Compile src/ to dist/ unless the build is current (once per process). */
function ensureBuilt(): void {
  if (built) return;
  const r = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`could not build dist/ (scripts/build.mjs exited with ${r.status ?? r.signal})`);
  built = true;
}

/** The node flags `npm start` runs dist/main.js with (package.json's start script): the bench runs what users run. */
export function startNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const m = /^node\s+(.*?)\s*dist\/main\.js$/.exec(pkg.scripts['start'] ?? '');
  if (!m) throw new Error(`package.json's start script is not "node [flags] dist/main.js": ${pkg.scripts['start']}`);
  return m[1]!.split(/\s+/).filter(Boolean);
}

/** Start Tern (dist/main.js, built first if stale) with the given CLI args; resolves when it listens. `onLine` sees every log line. */
export async function startTern(args: string[], opts: { onLine?: (line: string) => void } = {}): Promise<RunningBroker> {
  ensureBuilt();
  const t0 = performance.now();
  // BENCH_TERN_NODE_ARGS: extra node flags for the broker, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  const nodeArgs = process.env['BENCH_TERN_NODE_ARGS']?.split(/\s+/).filter(Boolean) ?? [];
  // BENCH_TERN_ARGS: extra broker options, e.g. "--commit-hold-ms 2" (for experiments; the published table uses none)
  const extraArgs = process.env['BENCH_TERN_ARGS']?.split(/\s+/).filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...startNodeFlags(), ...nodeArgs, 'dist/main.js', '--http-port', '0', '--mqtt-port', '0', '--log-level', 'info', ...args, ...extraArgs], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'],
  });
  proc.stdout!.on('data', (b: Buffer) => { if (process.env['BENCH_BROKER_LOG']) process.stderr.write(b); });
  const lines = createInterface({ input: proc.stdout! });
  if (opts.onLine) lines.on('line', opts.onLine);
  const info = await new Promise<Record<string, number>>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`broker exited with ${c}`)));
    lines.on('line', (l) => {
      try {
        const j = JSON.parse(l) as Record<string, number>;
        if (j['msg'] as unknown === 'tern listening') resolve(j);
      } catch { /* not JSON */ }
    });
  });
  const startMs = performance.now() - t0;
  const httpPort = info['httpPort']!;
  const mqttPort = info['mqttPort']!;
  return {
    proc, httpPort, mqttPort, target: loopbackTarget(mqttPort, httpPort), startMs,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
