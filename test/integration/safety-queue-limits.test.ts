// Promises about full queues and QoS 0 (issue 8, "tests that guard the promises"), end to end with a
// real broker and PostgreSQL: an offline session's queue is capped by --max-queued-messages and
// --max-queued-bytes (the newest message is dropped, counted, logged and audited as queue_overflow
// on the first drop and every 1000th); QoS 0 is not queued for an offline session; QoS 0 to a client
// whose transport buffer is above hardBufferBytes is dropped, counted and logged.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import pg from 'pg';
import { startBroker } from '../helpers/broker-process.ts';
import { close, connect, uniqueId } from '../helpers/clients.ts';

const MAX_MESSAGES = 5;
const MAX_BYTES = 8192;
const run = uniqueId('limits').replace(/[^a-zA-Z0-9-]/g, '');

async function until(done: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('offline queue limits and QoS 0 policies', () => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  let sql: pg.Client;
  const clients: MqttClient[] = [];

  before(async () => {
    broker = await startBroker(['--max-queued-messages', String(MAX_MESSAGES), '--max-queued-bytes', String(MAX_BYTES)]);
    sql = new pg.Client({ connectionString: broker.databaseUrl });
    await sql.connect();
  });
  after(async () => {
    await close(...clients);
    await sql.end();
    await broker.stop();
  });

  /** Subscribe a persistent 5.0 session to `topic` at `qos`, then leave it offline. */
  async function offlineSubscriber(clientId: string, topic: string, qos: 0 | 1): Promise<void> {
    const c = await connect(broker, 'tcp', 5, { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await c.subscribeAsync(topic, { qos });
    await c.endAsync();
  }

  /** Reconnect a persistent session and resolve with the payloads it receives before a PINGRESP-backed barrier. */
  async function drain(clientId: string, expected: number): Promise<string[]> {
    const got: string[] = [];
    const opts: IClientOptions = { protocolVersion: 5, reconnectPeriod: 0, clientId, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const c = mqtt.connect(broker.mqttUrl, opts);
    clients.push(c);
    c.on('message', (_t, payload) => got.push(payload.toString()));
    await new Promise<void>((resolve, reject) => { c.once('connect', () => resolve()); c.once('error', reject); });
    await until(() => got.length >= expected, `${expected} queued messages for ${clientId}`);
    // Anything more would have been sent right behind them: a round trip through the broker after
    const probe = `${run}/probe/${clientId}`;
    await c.subscribeAsync(probe, { qos: 1 });
    await c.publishAsync(probe, 'barrier', { qos: 1 });
    await until(() => got.includes('barrier'), 'the barrier');
    return got.filter((p) => p !== 'barrier');
  }

  const overflowRows = async (clientId: string): Promise<Array<{ actor: string; detail: Record<string, unknown> }>> => {
    const r = await sql.query(`select actor, detail from audit_events where event = 'queue_overflow' and client_id = $1 order by id`, [clientId]);
    return r.rows as Array<{ actor: string; detail: Record<string, unknown> }>;
  };

  test('--max-queued-messages: the newest are dropped, counted, logged and audited on the 1st and 1000th drop', async () => {
    const id = uniqueId('count-limit');
    const topic = `${run}/count`;
    await offlineSubscriber(id, topic, 1);
    const pub = await connect(broker, 'tcp', 5);
    clients.push(pub);
    const total = MAX_MESSAGES + 1001;
    for (let i = 0; i < total; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, total - i) }, (_, k) => pub.publishAsync(topic, `m${i + k}`, { qos: 1 })));
    }
    await until(async () => (await overflowRows(id)).length >= 2, 'two queue_overflow audit rows');
    const rows = await overflowRows(id);
    assert.deepEqual(rows.map((r) => r.detail['dropped']), [1, 1000]);
    for (const r of rows) {
      assert.equal(r.actor, 'broker');
      assert.equal(r.detail['topicName'], topic);
      assert.equal(r.detail['queued'], MAX_MESSAGES);
    }
    const logged = broker.logs.filter((l) => l['msg'] === 'session queue full; message dropped' && l['clientId'] === id);
    assert.deepEqual(logged.map((l) => l['dropped']), [1, 1000]);
    // The oldest are kept
    assert.deepEqual(await drain(id, MAX_MESSAGES), ['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  test('--max-queued-bytes: a message that would pass the byte limit is dropped and audited', async () => {
    const id = uniqueId('bytes-limit');
    const topic = `${run}/bytes`;
    await offlineSubscriber(id, topic, 1);
    const pub = await connect(broker, 'tcp', 5);
    clients.push(pub);
    for (const name of ['a', 'b', 'c', 'd']) await pub.publishAsync(topic, name.repeat(3000), { qos: 1 });
    await until(async () => (await overflowRows(id)).length >= 1, 'a queue_overflow audit row');
    const rows = await overflowRows(id);
    assert.equal(rows.length, 1, 'audited on the first drop only');
    assert.equal(rows[0]!.detail['dropped'], 1);
    assert.equal(rows[0]!.detail['queuedBytes'], 6000);
    const got = await drain(id, 2);
    assert.deepEqual(got.map((p) => p[0]), ['a', 'b']);
  });

  test('QoS 0 is not queued for an offline session', async () => {
    const id = uniqueId('offline-qos0');
    const topic = `${run}/qos0`;
    await offlineSubscriber(id, topic, 1);
    const pub = await connect(broker, 'tcp', 5);
    clients.push(pub);
    await pub.publishAsync(topic, 'qos0', { qos: 0 });
    await pub.publishAsync(topic, 'qos1', { qos: 1 });
    assert.deepEqual(await drain(id, 1), ['qos1']);
    assert.equal((await overflowRows(id)).length, 0, 'not a queue overflow');
  });
});

// With the default limits (4 MiB hardBufferBytes, 64 MiB queue bytes): 64 KiB messages fit a queue
describe('QoS 0 to a client that does not read', () => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  const clients: MqttClient[] = [];
  before(async () => { broker = await startBroker(); });
  after(async () => {
    await close(...clients);
    await broker.stop();
  });

  test('QoS 0 to a client whose transport buffer is above hardBufferBytes is dropped, counted and logged', async () => {
    const id = uniqueId('not-reading');
    const topic = `${run}/flood`;
    const socket = net.connect(broker.mqttPort, broker.host);
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    socket.on('error', () => undefined);
    const packets: Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => packets.push(p));
    socket.on('data', (b: Buffer) => parser.parse(b));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: id }));
    socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
    await until(() => packets.some((p) => p.cmd === 'suback'), 'SUBACK');
    socket.pause(); // stops reading: the broker's side of the socket fills up

    const pub = await connect(broker, 'tcp', 5);
    clients.push(pub);
    const payload = Buffer.alloc(64 * 1024, 0x63);
    const isLogged = (): boolean => broker.logs.some((l) => l['msg'] === 'client socket buffer full; QoS 0 messages dropped' && l['clientId'] === id);
    let published = 0;
    while (!isLogged()) {
      assert.ok(published < 4000, 'no drop after 250 MiB of QoS 0 to a client that does not read');
      await Promise.all(Array.from({ length: 20 }, () => pub.publishAsync(topic, payload, { qos: 1 })));
      published += 20;
    }
    const line = broker.logs.find((l) => l['msg'] === 'client socket buffer full; QoS 0 messages dropped' && l['clientId'] === id)!;
    assert.equal(line['dropped'], 1);
    assert.equal(line['level'], 40, 'logged as a warning');

    // The client reads again: it gets what was not dropped, fewer than were published, then PINGRESP
    socket.resume();
    socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
    await until(() => packets.some((p) => p.cmd === 'pingresp'), 'PINGRESP', 60_000);
    const received = packets.filter((p) => p.cmd === 'publish').length;
    assert.ok(received > 0 && received < published, `received ${received} of ${published}`);
    socket.destroy();
  });
});
