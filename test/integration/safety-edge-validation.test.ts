// Validation at the edge: hub names by the documented rule, and caps on topic name length, topic
// filter length, topic levels and client id length, so that nothing PostgreSQL would refuse (an
// index row too large, U+0000) reaches the store. Only the offending request fails: the
// connection that sent it keeps working where the protocol allows, other clients are unaffected.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import WebSocket from 'ws';
import type { MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId, type Version } from '../helpers/clients.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const TOPIC_NAME_INVALID = 0x90;
const TOPIC_FILTER_INVALID = 0x8f;
const CLIENT_ID_INVALID = 0x85;

/** `n` UTF-8 bytes of high-entropy text (random 3-byte CJK characters, then ASCII to fill). */
function entropy(n: number): string {
  let s = '';
  for (let i = 0; i + 3 <= n; i += 3) s += String.fromCharCode(0x4e00 + randomInt(0x5000));
  while (Buffer.byteLength(s) < n) s += String.fromCharCode(0x61 + randomInt(26));
  return s;
}

/** Resolve with the HTTP status of a WebSocket upgrade to `path` (101 when it opens). */
function upgradeStatus(broker: BrokerProcess, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${broker.host}:${broker.httpPort}${path}`, ['mqtt']);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no answer to the upgrade of ${path}`)); }, 5000);
    ws.once('open', () => { clearTimeout(timer); ws.terminate(); resolve(101); });
    ws.once('unexpected-response', (_req, res) => { clearTimeout(timer); ws.terminate(); resolve(res.statusCode ?? 0); });
    ws.once('error', () => undefined);
  });
}

describe('configured caps on topics and client ids', () => {
  let broker: BrokerProcess;
  let bystander: MqttClient;
  let bystanderTopic: string;
  before(async () => {
    broker = await startBroker([
      '--max-topic-length', '64', '--max-topic-filter-length', '80', '--max-topic-levels', '8', '--max-client-id-length', '32',
    ]);
    bystanderTopic = `ok/${uniqueId()}`.slice(0, 60);
    bystander = await connect(broker, 'tcp', 5);
    await bystander.subscribeAsync(bystanderTopic, { qos: 1 });
  });
  after(async () => {
    await close(bystander);
    await broker?.stop();
  });

  async function bystanderStillServed(): Promise<void> {
    assert.equal(broker.proc.exitCode, null, 'broker exited');
    const got = collect(bystander, 1, 5000);
    const other = await connect(broker, 'tcp', 4);
    await other.publishAsync(bystanderTopic, 'still here', { qos: 1 });
    assert.equal((await got)[0]!.payload.toString(), 'still here');
    await close(other);
  }

  const long = 'a'.repeat(65);
  const deep = Array.from({ length: 9 }, () => 'a').join('/'); // 9 levels, 17 bytes

  for (const [what, topic] of [['65 bytes', long], ['9 levels', deep]] as const) {
    test(`5.0 QoS 1 PUBLISH to a topic of ${what}: PUBACK 0x90, the connection keeps working`, async () => {
      const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('p').slice(0, 30), protocolVersion: 5 });
      c.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: 7, retain: true, dup: false, properties: {} });
      c.sendPacket({ cmd: 'publish', topic: 'fine', payload: Buffer.from('x'), qos: 1, messageId: 8, retain: false, dup: false, properties: {} });
      await c.log.count('puback', 2);
      const acks = c.log.of('puback').map((p) => [p.messageId, p.reasonCode ?? 0]);
      assert.deepEqual(acks, [[7, TOPIC_NAME_INVALID], [8, 0x10]]);
      assert.equal(c.log.closed, false);
      c.destroy();
      await bystanderStillServed();
    });
  }

  test('5.0 QoS 2 PUBLISH to a topic over the cap: PUBREC 0x90, and the packet id is free again', async () => {
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('p').slice(0, 30), protocolVersion: 5 });
    c.sendPacket({ cmd: 'publish', topic: long, payload: Buffer.from('x'), qos: 2, messageId: 9, retain: false, dup: false, properties: {} });
    const rec = await c.log.first('pubrec');
    assert.equal(rec.reasonCode, TOPIC_NAME_INVALID);
    c.sendPacket({ cmd: 'publish', topic: 'fine', payload: Buffer.from('x'), qos: 2, messageId: 9, retain: false, dup: false, properties: {} });
    await c.log.count('pubrec', 2);
    assert.equal(c.log.of('pubrec')[1]!.reasonCode, 0x10);
    c.destroy();
  });

  test('5.0 QoS 0 PUBLISH to a topic over the cap: DISCONNECT 0x90', async () => {
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('p').slice(0, 30), protocolVersion: 5 });
    c.sendPacket({ cmd: 'publish', topic: deep, payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: {} });
    const packets = await c.log.whenClosed(5000);
    assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, TOPIC_NAME_INVALID, c.log.describe());
    await bystanderStillServed();
  });

  test('3.1.1 PUBLISH to a topic over the cap: the connection is closed', async () => {
    const c = await RawPeer.connected(broker, 'tcp', 4, { clientId: uniqueId('p').slice(0, 30), protocolVersion: 4 });
    c.sendPacket({ cmd: 'publish', topic: long, payload: Buffer.from('x'), qos: 1, messageId: 3, retain: false, dup: false });
    const packets = await c.log.whenClosed(5000);
    assert.deepEqual(packets.filter((p) => p.cmd !== 'connack').map((p) => p.cmd), []);
    await bystanderStillServed();
  });

  test('a retained PUBLISH to 20,000 "/" is refused and later SUBSCRIBE # works', async () => {
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('p').slice(0, 30), protocolVersion: 5 });
    c.sendPacket({ cmd: 'publish', topic: '/'.repeat(20_000), payload: Buffer.from('x'), qos: 1, messageId: 1, retain: true, dup: false, properties: {} });
    assert.equal((await c.log.first('puback')).reasonCode, TOPIC_NAME_INVALID);
    c.destroy();
    const s = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('s').slice(0, 30), protocolVersion: 5 });
    s.sendPacket({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '#', qos: 0 }], properties: {} });
    assert.deepEqual((await s.log.first('suback')).granted, [0]);
    assert.equal(s.log.closed, false);
    s.destroy();
    await bystanderStillServed();
  });

  for (const version of [5, 4] as const) {
    test(`${version === 5 ? '5.0' : '3.1.1'} SUBSCRIBE: only the filters over the cap fail`, async () => {
      const c = await RawPeer.connected(broker, 'tcp', version, { clientId: uniqueId('s').slice(0, 30), protocolVersion: version });
      const props = version === 5 ? { properties: {} } : {};
      c.sendPacket({
        cmd: 'subscribe', messageId: 5, ...props, subscriptions: [
          { topic: 'b'.repeat(81), qos: 1 }, { topic: 'ok/+/#', qos: 1 }, { topic: Array.from({ length: 9 }, () => '+').join('/'), qos: 0 },
          { topic: `$share/g/${'c'.repeat(60)}`, qos: 0 }, { topic: `$share/g/${'c'.repeat(80)}`, qos: 0 },
        ],
      });
      const fail = version === 5 ? TOPIC_FILTER_INVALID : 0x80;
      assert.deepEqual((await c.log.first('suback')).granted, [fail, 1, fail, 0, fail]);
      assert.equal(c.log.closed, false);
      c.destroy();
    });
  }

  for (const version of [5, 4] as const) {
    test(`${version === 5 ? '5.0' : '3.1.1'} CONNECT with a client id over the cap is refused (${version === 5 ? '0x85' : 'code 2'})`, async () => {
      const c = await RawPeer.open(broker, 'tcp', version);
      c.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: 'x'.repeat(33) });
      const connack = await c.log.first('connack');
      assert.equal(version === 5 ? connack.reasonCode : connack.returnCode, version === 5 ? CLIENT_ID_INVALID : 2);
      await c.log.whenClosed(5000);
      const ok = await RawPeer.connected(broker, 'tcp', version, { clientId: 'x'.repeat(32), protocolVersion: version });
      ok.destroy();
    });
  }

  for (const version of [5, 4] as const) {
    test(`${version === 5 ? '5.0' : '3.1.1'} CONNECT with a will topic over the cap is refused`, async () => {
      const c = await RawPeer.open(broker, 'tcp', version);
      c.sendPacket({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: uniqueId('w').slice(0, 30),
        will: { topic: deep, payload: Buffer.from('gone'), qos: 0, retain: false },
      });
      const packets = await c.log.whenClosed(5000);
      const connack = packets.find((p) => p.cmd === 'connack');
      if (version === 5) assert.equal(connack?.reasonCode, TOPIC_NAME_INVALID, c.log.describe());
      else assert.equal(connack, undefined, c.log.describe());
    });
  }
});

describe('hub names', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(); });
  after(async () => { await broker?.stop(); });

  for (const [name, path] of [
    ['U+0000', '/clients/mqtt/hubs/%00'],
    ['a leading digit', '/clients/mqtt/hubs/1hub'],
    ['129 characters', `/clients/mqtt/hubs/h${'a'.repeat(128)}`],
    ['a space', '/clients/mqtt/hubs/a%20b'],
    ['a broken escape', '/clients/mqtt/hubs/a%zz'],
  ] as const) {
    test(`a WebSocket upgrade to a hub with ${name} gets HTTP 400`, async () => {
      assert.equal(await upgradeStatus(broker, path), 400);
    });
  }

  test('a hub of 128 characters of the documented alphabet is accepted', async () => {
    const hub = `H${'a_`,.[]9'.repeat(16)}`.slice(0, 128);
    assert.equal(await upgradeStatus(broker, `/clients/mqtt/hubs/${encodeURIComponent(hub)}`), 101);
  });
});

describe('the default caps fit PostgreSQL index rows', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(); });
  after(async () => { await broker?.stop(); });

  for (const version of [5, 4] as Version[]) {
    test(`${version === 5 ? '5.0' : '3.1.1'}: a 128-character hub, a client id, a topic filter and a retained topic at their caps, of high-entropy text, are stored`, async () => {
      const hub = `H${Array.from({ length: 127 }, () => 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_`,.[]'[randomInt(68)]).join('')}`;
      const url = `ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${encodeURIComponent(hub)}`;
      const clientId = entropy(256);
      const filter = entropy(1024);
      const mqtt = await import('mqtt');
      const opts = version === 5
        ? { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 60 } }
        : { protocolVersion: 4 as const, clean: false };
      const client = await mqtt.default.connectAsync(url, { ...opts, clientId, reconnectPeriod: 0, connectTimeout: 5000 });
      const granted = await client.subscribeAsync(filter, { qos: 1 });
      assert.deepEqual(granted.map((g) => g.qos), [1]);
      // the retained row's key is (hub, topic name)
      await client.publishAsync(filter, 'retained', { qos: 1, retain: true });
      const back = collect(client, 1, 5000);
      await client.publishAsync(filter, 'routed', { qos: 1 });
      assert.ok((await back).length === 1);
      await close(client);
      const errors = broker.logs.filter((l) => Number(l['level']) >= 50);
      assert.deepEqual(errors, []);
    });
  }
});
