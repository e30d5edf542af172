// Durability cost and start-up: QoS 1 fan-in to a persistent subscriber (durable in PostgreSQL
// before PUBACK) next to a non-persistent one, interleaved in one run; and the start-up time
// with many stored sessions. Usage: npx tsx bench/persistence.ts [--seconds 5] [--rounds 3] [--sessions 100000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startEmbeddedPostgres } from '../src/postgres/embedded.ts';
import { PgStore } from '../src/store/pg/pg-store.ts';
import { RawPeer, type PeerTarget } from '../test/helpers/raw-peer.ts';
import { median, sleep, startTern } from './lib.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, sessions: { type: 'string', default: '100000' }, transport: { type: 'string', default: 'ws' } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const sessionCount = Number(values.sessions);
const transport = values.transport as 'ws' | 'tcp';
const quiet = { info: () => undefined, warn: () => undefined, error: (o: object, m?: string) => console.error(m, o) };

interface FanInResult { rate: number; published: number; acked: number; received: number; lost: number; duplicates: number; reordered: number; genCpuPct: number }

/** 4 publishers pipeline QoS 1 (window 256 each) to one subscriber for `seconds`. */
async function fanIn(target: PeerTarget, persistent: boolean, round: number): Promise<FanInResult> {
  const subId = `bench-sub-${persistent ? 'p' : 'n'}-${round}`;
  const sub = await RawPeer.open(target, transport, 4, { log: false });
  await sub.connect({ clientId: subId, clean: !persistent });
  const topic = `bench/${subId}`;
  await sub.subscribe(`${topic}/+`, 1);
  const lastSeq = new Map<string, number>();
  let received = 0;
  let duplicates = 0;
  let reordered = 0;
  let counting = false;
  let receivedInWindow = 0;
  const seen = new Set<string>();
  sub.on((p) => {
    if (p.cmd !== 'publish') return;
    sub.sendPacket({ cmd: 'puback', messageId: p.messageId });
    const seq = (p.payload as Buffer).readUInt32BE(0);
    const key = `${p.topic}:${seq}`;
    if (seen.has(key)) { duplicates++; return; }
    seen.add(key);
    received++;
    if (counting) receivedInWindow++;
    const last = lastSeq.get(p.topic) ?? -1;
    if (seq < last) reordered++;
    lastSeq.set(p.topic, seq);
  });
  const pubs = await Promise.all([0, 1, 2, 3].map(async (i) => {
    const c = await RawPeer.open(target, transport, 4, { log: false });
    await c.connect({ clientId: `bench-pub-${round}-${i}-${persistent ? 'p' : 'n'}` });
    return c;
  }));
  let stop = false;
  let published = 0;
  let acked = 0;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  const payload = Buffer.alloc(64, 7);
  const done = pubs.map((c, i) => new Promise<void>((resolve) => {
    let seq = 0;
    let inflight = 0;
    const t = `${topic}/${i}`;
    const pump = (): void => {
      const batch: Buffer[] = [];
      while (!stop && inflight < 256) {
        const pl = Buffer.from(payload);
        pl.writeUInt32BE(seq, 0);
        batch.push(mqttPublish(t, pl, (seq % 65535) + 1));
        seq++;
        inflight++;
        published++;
      }
      if (batch.length) c.send(Buffer.concat(batch));
      if (stop && inflight === 0) resolve();
    };
    c.on((p) => {
      if (p.cmd !== 'puback') return;
      inflight--;
      acked++;
      if (inflight < 128 || stop) pump();
    });
    pump();
  }));
  counting = true;
  await sleep(seconds * 1000);
  counting = false;
  stop = true;
  const wall = performance.now() - wall0;
  const cpu = process.cpuUsage(cpu0);
  await Promise.race([Promise.all(done), sleep(10_000)]);
  const deadline = Date.now() + 10_000;
  while (received < acked && Date.now() < deadline) await sleep(50);
  for (const c of pubs) c.destroy();
  sub.destroy();
  return {
    rate: Math.round(receivedInWindow / seconds), published, acked, received, lost: Math.max(0, acked - received), duplicates, reordered,
    genCpuPct: Math.round(((cpu.user + cpu.system) / 1000 / wall) * 100),
  };
}

function mqttPublish(topic: string, payload: Buffer, messageId: number): Buffer {
  const tlen = Buffer.byteLength(topic);
  const remaining = 2 + tlen + 2 + payload.length;
  const b = Buffer.allocUnsafe(2 + remaining);
  b[0] = 0x32;
  b[1] = remaining; // < 128 for this benchmark's sizes
  b.writeUInt16BE(tlen, 2);
  b.write(topic, 4);
  b.writeUInt16BE(messageId, 4 + tlen);
  payload.copy(b, 6 + tlen);
  return b;
}

async function seedSessions(url: string, n: number): Promise<void> {
  const store = new PgStore({ url, logger: quiet });
  await store.open();
  const now = Date.now();
  for (let i = 0; i < n; i += 5000) {
    await store.transaction((tx) => {
      for (let k = i; k < Math.min(n, i + 5000); k++) {
        tx.putSession({ hub: 'default', clientId: `stored-${k}`, protocolVersion: 5, expiryIntervalSec: 86_400, connectedAtMs: null, disconnectedAtMs: now, nodeId: 'node-1' });
        tx.putSubscription({ hub: 'default', clientId: `stored-${k}`, topicFilter: `devices/${k}/cmd`, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
      }
    });
  }
  await store.close();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-bench-'));
  const db = await startEmbeddedPostgres({ dataDir: dir, logger: quiet });
  try {
    const broker = await startTern(['--database-url', db.url]);
    const results: Record<'nonPersistent' | 'persistent', FanInResult[]> = { nonPersistent: [], persistent: [] };
    for (let r = 0; r < rounds; r++) {
      results.nonPersistent.push(await fanIn(broker.target, false, r));
      results.persistent.push(await fanIn(broker.target, true, r));
    }
    await broker.stop();
    for (const [name, rs] of Object.entries(results)) {
      for (const x of rs) console.log(JSON.stringify({ bench: 'qos1-fan-in', transport, subscriber: name, ...x }));
    }
    const np = median(results.nonPersistent.map((x) => x.rate));
    const p = median(results.persistent.map((x) => x.rate));
    const failed = [...results.nonPersistent, ...results.persistent].some((x) => x.lost || x.duplicates || x.reordered);
    console.log(`| QoS 1 fan-in 4→1 (${transport}) | non-persistent ${np} msg/s | persistent ${p} msg/s | ratio ${(p / np).toFixed(2)} |${failed ? ' FAILED: loss/dup/order' : ''}`);

    await seedSessions(db.url, sessionCount);
    const starts: number[] = [];
    for (let i = 0; i < 2; i++) {
      const spawnedAt = performance.now();
      const b = await startTern(['--database-url', db.url]);
      const c = await RawPeer.open(b.target, 'tcp', 5, { log: false });
      const connack = await c.connect({ clientId: 'stored-42', clean: false, properties: { sessionExpiryInterval: 86_400 } });
      const ready = performance.now() - spawnedAt;
      c.destroy();
      starts.push(b.startMs);
      console.log(JSON.stringify({ bench: 'startup', storedSessions: sessionCount, startMs: Math.round(b.startMs), sessionPresent: connack.sessionPresent, sinceSpawnToConnackMs: Math.round(ready) }));
      await b.stop();
    }
    console.log(`| start-up with ${sessionCount} stored sessions | ${Math.round(median(starts))} ms to listening |`);
  } finally {
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
