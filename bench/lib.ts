// Benchmark plumbing: start a broker process, a low-overhead MQTT client speaking raw
// mqtt-packet over WebSocket or TCP, and small statistics helpers.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import type { Packet } from 'mqtt-packet';
import WebSocket from 'ws';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface RunningBroker {
  proc: ChildProcess;
  httpPort: number;
  mqttPort: number;
  /** Milliseconds from spawn to the "listening" log line. */
  startMs: number;
  stop(): Promise<void>;
}

/** Start Tern (src/main.ts) with the given CLI args; resolves when it listens. `onLine` sees every log line. */
export async function startTern(args: string[], opts: { onLine?: (line: string) => void } = {}): Promise<RunningBroker> {
  const t0 = performance.now();
  // BENCH_TERN_NODE_ARGS: extra node flags for the broker, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  const nodeArgs = process.env['BENCH_TERN_NODE_ARGS']?.split(/\s+/).filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts', '--http-port', '0', '--mqtt-port', '0', '--log-level', 'info', ...args], {
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
  return {
    proc, httpPort: info['httpPort']!, mqttPort: info['mqttPort']!, startMs,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** A minimal MQTT client: encode with mqtt-packet, one parser, no client library. */
export class BenchClient {
  readonly #send: (b: Buffer) => void;
  readonly #parser;
  readonly #close: () => void;
  onPacket: (p: Packet) => void = () => undefined;
  bufferedBytes: () => number;

  private constructor(send: (b: Buffer) => void, close: () => void, buffered: () => number, version: 4 | 5) {
    this.#send = send;
    this.#close = close;
    this.bufferedBytes = buffered;
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on('packet', (p: Packet) => this.onPacket(p));
  }

  static async open(kind: 'ws' | 'tcp', port: number, version: 4 | 5 = 4): Promise<BenchClient> {
    if (kind === 'ws') {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, 'mqtt');
      ws.binaryType = 'nodebuffer';
      await once(ws, 'open');
      const c = new BenchClient((b) => ws.send(b), () => ws.terminate(), () => ws.bufferedAmount, version);
      ws.on('message', (b: Buffer) => c.#parser.parse(b));
      return c;
    }
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    await once(s, 'connect');
    const c = new BenchClient((b) => s.write(b), () => s.destroy(), () => s.writableLength, version);
    s.on('data', (b: Buffer) => c.#parser.parse(b));
    s.on('error', () => undefined);
    return c;
  }

  send(p: Packet, version: 4 | 5 = 4): void {
    this.#send(mqttPacket.generate(p, { protocolVersion: version }));
  }

  sendRaw(b: Buffer): void {
    this.#send(b);
  }

  /** CONNECT and wait for CONNACK; returns it. */
  async connect(p: Partial<mqttPacket.IConnectPacket> & { clientId: string }, version: 4 | 5 = 4): Promise<Packet> {
    const got = new Promise<Packet>((resolve) => { this.onPacket = resolve; });
    this.send({ cmd: 'connect', keepalive: 0, clean: true, protocolVersion: version, ...p }, version);
    return got;
  }

  async subscribe(topic: string, qos: 0 | 1 | 2, version: 4 | 5 = 4): Promise<void> {
    const got = new Promise<void>((resolve) => { this.onPacket = (p) => { if (p.cmd === 'suback') resolve(); }; });
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] }, version);
    await got;
  }

  close(): void {
    this.#close();
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
