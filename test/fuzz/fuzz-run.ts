// Runs the wire fuzzer against a broker process: `lanes` concurrent loops each open a connection
// (TCP or WebSocket), send the bytes of `connectionScript(seed, index, version)`, then close it
// (or, for an interactive script, first wait for the broker's answer or close). Meanwhile a
// well-behaved MQTT.js client (its own connection) does QoS 1 publish → PUBACK → delivery round
// trips without pause; every one must complete. Afterwards the caller checks the broker's log and
// memory (see checkBrokerHealth).
import net from 'node:net';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import mqtt, { type MqttClient } from 'mqtt';
import type { BrokerProcess } from '../helpers/broker-process.ts';
import pg from 'pg';
import { connectionScript, type Version } from './mutate.ts';

export type Transport = 'tcp' | 'ws';

export interface FuzzOptions {
  transport: Transport;
  version: Version;
  seed: number;
  /** Stop once this many mutated packets were sent. */
  mutatedPackets: number;
  /** Concurrent fuzz connections. */
  lanes?: number;
  /** Only these connection indexes (a replay); default: 0, 1, 2, ... until `mutatedPackets`. */
  only?: number[];
  /** Called every `every` connections with the progress so far. */
  progress?: (s: FuzzStats) => void;
}

export interface FuzzStats {
  connections: number;
  packets: number;
  mutated: number;
  bytes: number;
  /** Connections the broker closed before we did (it refused the input). */
  closedByBroker: number;
  /** Interactive connections that got the final PINGRESP. */
  answered: number;
  /** Connections that were not closed 10 s after we closed them (a leak; must stay 0). */
  notClosed: number;
  probeRoundTrips: number;
  probeMaxMs: number;
  probeFailures: string[];
  ms: number;
  /** Every connection index with its wall-clock start and end (to find the ones open when a log line was written). */
  recent: Array<{ index: number; start: number; end: number }>;
}

const CLOSE_WAIT_MS = 10_000;
const ANSWER_WAIT_MS = 1000;

/** Send one connection's script; resolves when the connection is closed. */
async function runConnection(broker: BrokerProcess, o: FuzzOptions, index: number, stats: FuzzStats): Promise<void> {
  const script = connectionScript(o.seed, index, o.version);
  stats.packets += script.packets;
  stats.mutated += script.mutated;
  for (const c of script.chunks) stats.bytes += c.length;
  let received = Buffer.alloc(0);
  let closed = false;
  let weClosed = false;
  let wake: () => void = () => undefined;
  const onData = (b: Buffer): void => {
    if (script.interactive && received.length < 64 * 1024) received = Buffer.concat([received, b]);
    wake();
  };
  const onClose = (): void => {
    closed = true;
    if (!weClosed) stats.closedByBroker++;
    wake();
  };
  /** Resolve once `done()` holds or after `ms`; false on timeout. */
  const waitFor = (done: () => boolean, ms: number): Promise<boolean> => new Promise((resolve) => {
    if (done()) { resolve(true); return; }
    const timer = setTimeout(() => { wake = () => undefined; resolve(false); }, ms);
    wake = () => {
      if (!done()) return;
      clearTimeout(timer);
      wake = () => undefined;
      resolve(true);
    };
  });
  let end: () => void;
  let kill: () => void;
  if (o.transport === 'tcp') {
    const socket = net.connect(broker.mqttPort, broker.host);
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.on('close', onClose);
    const opened = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('close', () => resolve(false));
    });
    if (!opened) throw new Error(`fuzz connection ${index}: TCP connect failed (is the broker alive?)`);
    for (const c of script.chunks) if (!closed) socket.write(c);
    end = () => socket.end();
    kill = () => socket.destroy();
  } else {
    const ws = new WebSocket(broker.wsUrl(), ['mqtt']);
    ws.on('message', (d: Buffer) => onData(Buffer.isBuffer(d) ? d : Buffer.from(d as unknown as ArrayBuffer)));
    ws.on('error', () => undefined);
    ws.on('close', onClose);
    const opened = await new Promise<boolean>((resolve) => {
      ws.once('open', () => resolve(true));
      ws.once('close', () => resolve(false));
    });
    if (!opened) throw new Error(`fuzz connection ${index}: WebSocket upgrade failed (is the broker alive?)`);
    // One connection in 20 sends its bytes in text frames (MQTT over WebSocket is binary only [MQTT-6.0.0-1])
    const binary = index % 20 !== 7;
    for (const c of script.chunks) if (ws.readyState === WebSocket.OPEN) ws.send(c, { binary });
    end = () => ws.close();
    kill = () => ws.terminate();
  }
  if (script.interactive) {
    const pingresp = (): boolean => {
      for (let i = received.indexOf(0xd0); i >= 0 && i + 1 < received.length; i = received.indexOf(0xd0, i + 1)) if (received[i + 1] === 0) return true;
      return false;
    };
    if (await waitFor(() => closed || pingresp(), ANSWER_WAIT_MS)) if (!closed) stats.answered++;
  }
  if (!closed) {
    weClosed = true;
    end();
    if (!(await waitFor(() => closed, CLOSE_WAIT_MS))) {
      stats.notClosed++;
      kill();
    }
  }
}

/** The well-behaved client: QoS 1 round trips on its own connection until `stop()`. */
function startProbe(broker: BrokerProcess, o: FuzzOptions, stats: FuzzStats): { ready: Promise<void>; stop: () => Promise<void> } {
  const clientId = `fuzz-probe-${process.pid}-${o.transport}-${o.version}`;
  const topic = `fuzz-probe/${clientId}`;
  const url = o.transport === 'tcp' ? broker.mqttUrl : broker.wsUrl();
  let client: MqttClient | undefined;
  let finishing = false;
  let closing = false;
  let loop: Promise<void> = Promise.resolve();
  const ready = (async () => {
    client = await mqtt.connectAsync(url, { protocolVersion: o.version, clientId, reconnectPeriod: 0, connectTimeout: 10_000, keepalive: 30 });
    client.on('close', () => { if (!closing) stats.probeFailures.push(`the probe's connection closed after ${stats.probeRoundTrips} round trips`); });
    await client.subscribeAsync(topic, { qos: 1 });
    loop = (async () => {
      for (let n = 0; !finishing && stats.probeFailures.length === 0; n++) {
        const payload = `probe-${n}`;
        const started = Date.now();
        const arrived = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { client!.off('message', onMessage); reject(new Error(`round trip ${n}: no delivery within 15 s`)); }, 15_000);
          const onMessage = (t: string, p: Buffer): void => {
            if (t !== topic || p.toString() !== payload) return;
            clearTimeout(timer);
            client!.off('message', onMessage);
            resolve();
          };
          client!.on('message', onMessage);
        });
        try {
          await Promise.race([
            client!.publishAsync(topic, payload, { qos: 1 }),
            new Promise((_, reject) => setTimeout(() => reject(new Error(`round trip ${n}: no PUBACK within 15 s`)), 15_000).unref()),
          ]);
          await arrived;
        } catch (e) {
          arrived.catch(() => undefined);
          stats.probeFailures.push((e as Error).message);
          return;
        }
        stats.probeRoundTrips++;
        stats.probeMaxMs = Math.max(stats.probeMaxMs, Date.now() - started);
      }
    })();
  })();
  return {
    ready,
    stop: async () => {
      finishing = true;
      await loop; // finish the round trip in progress
      closing = true;
      await client?.endAsync().catch(() => undefined);
    },
  };
}

/** Fuzz until `mutatedPackets` mutated packets were sent, with the probe running throughout. */
export async function fuzz(broker: BrokerProcess, o: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = {
    connections: 0, packets: 0, mutated: 0, bytes: 0, closedByBroker: 0, answered: 0, notClosed: 0,
    probeRoundTrips: 0, probeMaxMs: 0, probeFailures: [], ms: 0, recent: [],
  };
  const started = Date.now();
  const probe = startProbe(broker, o, stats);
  await probe.ready;
  // The probe runs alongside: stop it as soon as it has completed one round trip after the fuzz ends
  let next = 0;
  const only = o.only;
  const take = (): number | undefined => {
    if (only) return next < only.length ? only[next++] : undefined;
    return stats.mutated < o.mutatedPackets ? next++ : undefined;
  };
  const lane = async (): Promise<void> => {
    for (let index = take(); index !== undefined; index = take()) {
      const entry = { index, start: Date.now(), end: 0 };
      stats.recent.push(entry);
      await runConnection(broker, o, index, stats);
      entry.end = Date.now();
      stats.connections++;
      if (o.progress && stats.connections % 500 === 0) o.progress(stats);
      if (stats.probeFailures.length > 0) return;
    }
  };
  await Promise.all(Array.from({ length: o.lanes ?? 8 }, lane));
  // One more round trip after the last fuzz connection: the client is still answered
  const after = stats.probeRoundTrips;
  const deadline = Date.now() + 15_000;
  while (stats.probeRoundTrips <= after && stats.probeFailures.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (stats.probeRoundTrips <= after && stats.probeFailures.length === 0) stats.probeFailures.push('no round trip completed within 15 s after the fuzz');
  await probe.stop();
  stats.ms = Date.now() - started;
  return stats;
}

/**
 * Remove the state a fuzz run may legitimately leave in the broker's memory, so that what remains
 * is a leak: every stored session (a persistent one holds its queued messages in memory; mutated
 * CONNECTs make some with arbitrary client ids) and every retained message. Read from the
 * broker's database, then removed through MQTT: a clean-start CONNECT per session, an empty
 * retained PUBLISH per topic.
 */
export async function cleanUp(broker: BrokerProcess, databaseUrl: string): Promise<{ sessions: number; retained: number }> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  let sessions: Array<{ client_id: string }>;
  let retained: Array<{ topic_name: string }>;
  try {
    sessions = (await db.query(`SELECT client_id FROM sessions WHERE hub = 'default'`)).rows as Array<{ client_id: string }>;
    retained = (await db.query(`SELECT topic_name FROM retained_messages WHERE hub = 'default'`)).rows as Array<{ topic_name: string }>;
  } finally {
    await db.end();
  }
  for (const { client_id: clientId } of sessions) {
    const c = await mqtt.connectAsync(broker.mqttUrl, {
      protocolVersion: 5, clientId, clean: true, reconnectPeriod: 0, connectTimeout: 10_000, properties: { sessionExpiryInterval: 0 },
    });
    await c.endAsync();
  }
  if (retained.length > 0) {
    const c = await mqtt.connectAsync(broker.mqttUrl, { protocolVersion: 5, clientId: `fuzz-janitor-${process.pid}`, reconnectPeriod: 0, connectTimeout: 10_000 });
    for (const { topic_name: topic } of retained) await c.publishAsync(topic, '', { qos: 1, retain: true });
    await c.endAsync();
  }
  return { sessions: sessions.length, retained: retained.length };
}

/** Resident set size of a process in KiB (Linux /proc). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** Log lines at level error (50) or fatal (60). */
export function errorLines(logs: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  return logs.filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 50);
}

function errOf(l: Record<string, unknown>): { type?: string; message?: string; stack?: string } {
  return (l['err'] as { type?: string; message?: string; stack?: string } | undefined) ?? {};
}

/** Indexes of the fuzz connections open at `time` (ms since the epoch, from a log line), with a margin. */
export function openAt(stats: FuzzStats, time: number, marginMs = 100): number[] {
  return stats.recent.filter((r) => r.start - marginMs <= time && (r.end === 0 || r.end + marginMs >= time)).map((r) => r.index);
}

export function describeLine(l: Record<string, unknown>): string {
  const err = l['err'] as { type?: string; message?: string; stack?: string } | undefined;
  const frame = err?.stack?.split('\n').slice(0, 4).join(' | ');
  return `${String(l['msg'])}${err ? `: ${err.type ?? ''} ${err.message ?? ''} [${frame ?? ''}]` : ''} ${JSON.stringify({ clientId: l['clientId'], time: l['time'] })}`;
}
