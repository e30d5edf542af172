// Retained replay within limits (issue 8, finding 3): each SUBSCRIBE used to replay every matching
// retained message at once, outside the session's queue limits, and QoS 0 backpressure ignored the
// connection's own unflushed output. Measured before the fix: 2,000 retained × 1 KiB and a client
// sending 150 × SUBSCRIBE # (1.2 KB) that never reads took the broker from ~127 to ~800 MiB. Here
// two such clients (QoS 0 and QoS 1) attack a real broker; its RSS (from /proc) must stay within a
// generous bound and a well-behaved client must be answered throughout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';

const RETAINED = 2000;
const PAYLOAD = Buffer.alloc(1024, 0x61);
const SUBSCRIBES = 150;
/** RSS growth allowed over the baseline; the unfixed broker grew by ~670 MiB with one such client. */
const MAX_GROWTH_MIB = 200;

const run = uniqueId('replay').replace(/[^a-zA-Z0-9-]/g, '');

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) / 1024;
}

/** A client that connects, sends `SUBSCRIBES` × SUBSCRIBE # at `qos` in one write, and never reads. */
async function attacker(broker: BrokerProcess, clientId: string, qos: 0 | 1): Promise<net.Socket> {
  const socket = net.connect(broker.mqttPort, broker.host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  socket.pause(); // never reads: the broker's output piles up on its side
  const packets = [mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId })];
  for (let i = 1; i <= SUBSCRIBES; i++) {
    packets.push(mqttPacket.generate({ cmd: 'subscribe', messageId: i, subscriptions: [{ topic: '#', qos }] }));
  }
  socket.write(Buffer.concat(packets));
  return socket;
}

describe('retained replay stays within limits (finding 3)', () => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  let sql: pg.Client;
  const clients: MqttClient[] = [];
  const sockets: net.Socket[] = [];

  before(async () => {
    broker = await startBroker();
    sql = new pg.Client({ connectionString: broker.databaseUrl });
    await sql.connect();
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await close(...clients);
    await sql.end();
    await broker.stop();
  });

  test('clients that SUBSCRIBE # 150 times and never read: bounded RSS, others answered throughout', async () => {
    const pub = await connect(broker, 'tcp', 4);
    clients.push(pub);
    for (let i = 0; i < RETAINED; i += 200) {
      await Promise.all(Array.from({ length: 200 }, (_, k) => pub.publishAsync(`${run}/r/${i + k}`, PAYLOAD, { qos: 1, retain: true })));
    }
    const pid = broker.proc.pid!;
    const baseline = rssMiB(pid);

    const probe = await connect(broker, 'tcp', 5);
    clients.push(probe);
    const probeTopic = `${run}-probe`;
    await probe.subscribeAsync(probeTopic, { qos: 1 });

    const ids = [uniqueId('attacker-q0'), uniqueId('attacker-q1')];
    sockets.push(await attacker(broker, ids[0]!, 0), await attacker(broker, ids[1]!, 1));

    // Until the broker has handled every SUBSCRIBE (one audit row each), sample its RSS and keep a
    // probe round trip going: each must be answered
    let peak = baseline;
    let roundTrips = 0;
    let handled = 0;
    let slowestMs = 0; // reported, not asserted
    while (handled < 2 * SUBSCRIBES) {
      const got = collect(probe, 1, 30_000);
      const t0 = Date.now();
      await probe.publishAsync(probeTopic, `probe-${roundTrips}`, { qos: 1 });
      assert.equal((await got)[0]!.payload.toString(), `probe-${roundTrips}`);
      slowestMs = Math.max(slowestMs, Date.now() - t0);
      roundTrips++;
      peak = Math.max(peak, rssMiB(pid));
      const r = await sql.query(`select count(*)::int as n from audit_events where event = 'subscribe' and client_id = any($1)`, [ids]);
      handled = r.rows[0].n as number;
    }
    // A few more round trips and samples once everything is handled (the replay goes on as pages)
    for (let i = 0; i < 20; i++) {
      const got = collect(probe, 1, 30_000);
      await probe.publishAsync(probeTopic, `after-${i}`, { qos: 1 });
      await got;
      peak = Math.max(peak, rssMiB(pid));
    }
    const growth = peak - baseline;
    console.log(`# broker RSS: baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB (+${growth.toFixed(0)} MiB); ${roundTrips} probe round trips during the attack, slowest ${slowestMs} ms`);
    assert.ok(growth < MAX_GROWTH_MIB, `broker RSS grew by ${growth.toFixed(0)} MiB (baseline ${baseline.toFixed(0)} MiB)`);
  });
});
