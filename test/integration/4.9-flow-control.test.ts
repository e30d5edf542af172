// Flow control (MQTT 5 §4.9) and Maximum Packet Size (§3.1.2.11.4, §3.2.2.3.6): the broker's
// Receive Maximum toward clients, the client's Receive Maximum toward the broker, and packet
// size limits in both directions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, matrix, quietFor, uniqueId } from '../helpers/clients.ts';
import { encode } from '../helpers/mqtt-wire.ts';
import { tap, writeRaw, type PacketLog } from '../helpers/packet-log.ts';

/** Receive Maximum 2 and Maximum Packet Size 1024 toward clients. */
let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--receive-maximum', '2', '--max-packet-size', '1024']); });
after(async () => { await broker?.stop(); });

const v5 = 5 as const;

function publishBytes(version: 4 | 5, topic: string, qos: 0 | 1 | 2, messageId: number, payload: Buffer = Buffer.from('x'), dup = false): Buffer {
  return encode({ cmd: 'publish', topic, payload, qos, retain: false, dup, ...(qos > 0 ? { messageId } : {}) }, version);
}

/** Wait for the close; on 5.0 the DISCONNECT with `code` must come first. */
async function closedWith(log: PacketLog, version: 4 | 5, code: number): Promise<void> {
  const packets = await log.whenClosed();
  const d = packets.find((p) => p.cmd === 'disconnect');
  if (version === 5) {
    assert.ok(d, `expected DISCONNECT 0x${code.toString(16)}; got ${log.describe()}`);
    assert.equal(d.reasonCode, code);
  } else {
    assert.equal(d, undefined, '3.1.1 has no server DISCONNECT');
  }
}

/** A client whose raw writes bypass MQTT.js; PUBRECs for ids MQTT.js did not send are ignored by it. */
async function rawWriter(transport: 'tcp' | 'ws', version: 4 | 5): Promise<{ client: MqttClient; wire: PacketLog }> {
  const client = await connect(broker, transport, version);
  client.on('error', () => undefined);
  return { client, wire: tap(client) };
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`Receive Maximum (${transport} v5)`, () => {
    test('[MQTT-3.3.4-7] a QoS 2 PUBLISH beyond the broker\'s Receive Maximum ends the connection with 0x93', async () => {
      const topic = `fc/${uniqueId()}`;
      const { client, wire } = await rawWriter(transport, v5);
      writeRaw(client, publishBytes(v5, topic, 2, 60001));
      writeRaw(client, publishBytes(v5, topic, 2, 60002));
      await wire.count('pubrec', 2);
      // No PUBREL is ever sent: both stay unacknowledged, so a third is one too many
      writeRaw(client, publishBytes(v5, topic, 2, 60003));
      await closedWith(wire, v5, 0x93);
      assert.equal(wire.of('pubrec').length, 2);
      await close(client);
    });

    test('[MQTT-3.3.4-7] releasing a QoS 2 id with PUBREL makes room for another PUBLISH; a resent DUP does not count', async () => {
      const topic = `fc/${uniqueId()}`;
      const { client, wire } = await rawWriter(transport, v5);
      writeRaw(client, publishBytes(v5, topic, 2, 60001));
      writeRaw(client, publishBytes(v5, topic, 2, 60002));
      await wire.count('pubrec', 2);
      // A retransmission of an id awaiting PUBREL is not a new message [MQTT-4.3.3-9]
      writeRaw(client, publishBytes(v5, topic, 2, 60002, Buffer.from('x'), true));
      await wire.count('pubrec', 3);
      writeRaw(client, encode({ cmd: 'pubrel', messageId: 60001 }, v5));
      await wire.first('pubcomp');
      writeRaw(client, publishBytes(v5, topic, 2, 60003));
      await wire.count('pubrec', 4);
      assert.equal(wire.closed, false);
      assert.equal(wire.of('disconnect').length, 0);
      await close(client);
    });

    test('[MQTT-3.3.4-7] QoS 1 and QoS 2 publishes share the quota; acknowledged QoS 1 publishes free it at once', async () => {
      const topic = `fc/${uniqueId()}`;
      const { client, wire } = await rawWriter(transport, v5);
      // Many QoS 1 publishes are fine: each is acknowledged before the next arrives
      for (let i = 1; i <= 5; i++) writeRaw(client, publishBytes(v5, topic, 1, 61000 + i));
      await wire.count('puback', 5);
      writeRaw(client, publishBytes(v5, topic, 2, 62001));
      writeRaw(client, publishBytes(v5, topic, 2, 62002));
      await wire.count('pubrec', 2);
      writeRaw(client, publishBytes(v5, topic, 1, 61010));
      await closedWith(wire, v5, 0x93);
      await close(client);
    });

    test('[MQTT-3.3.4-9] the broker sends no more QoS 1 PUBLISHes than the client\'s Receive Maximum until they are acknowledged', async () => {
      const topic = `fc/${uniqueId()}`;
      const held: Array<() => void> = [];
      let hold = true;
      const sub = await connect(broker, transport, v5, {
        properties: { receiveMaximum: 2 },
        customHandleAcks: (_topic, _message, _packet, done) => {
          if (hold) held.push(() => done(0));
          else done(0);
        },
      });
      const wire = tap(sub);
      const pub = await connect(broker, transport, v5);
      await sub.subscribeAsync(topic, { qos: 1 });
      const got = collect(sub, 5);
      for (let i = 0; i < 5; i++) await pub.publishAsync(topic, String(i), { qos: 1 });
      await wire.count('publish', 2);
      await quietFor(400);
      assert.equal(wire.of('publish').length, 2, 'more than Receive Maximum QoS 1 messages in flight');
      hold = false;
      for (const release of held.splice(0)) release();
      const payloads = (await got).map((m) => m.payload.toString());
      assert.deepEqual(payloads, ['0', '1', '2', '3', '4']);
      assert.equal(wire.of('publish').length, 5);
      await close(sub, pub);
    });

    test('[MQTT-3.3.4-9] QoS 2 deliveries count until PUBCOMP', async () => {
      const topic = `fc/${uniqueId()}`;
      const held: Array<() => void> = [];
      let hold = true;
      const sub = await connect(broker, transport, v5, {
        properties: { receiveMaximum: 1 },
        customHandleAcks: (_topic, _message, _packet, done) => {
          if (hold) held.push(() => done(0));
          else done(0);
        },
      });
      const wire = tap(sub);
      const pub = await connect(broker, transport, v5);
      await sub.subscribeAsync(topic, { qos: 2 });
      const got = collect(sub, 3);
      for (let i = 0; i < 3; i++) await pub.publishAsync(topic, String(i), { qos: 2 });
      await wire.count('publish', 1);
      await quietFor(300);
      assert.equal(wire.of('publish').length, 1);
      hold = false;
      for (const release of held.splice(0)) release();
      assert.deepEqual((await got).map((m) => m.payload.toString()), ['0', '1', '2']);
      await close(sub, pub);
    });
  });
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`Receive Maximum (${transport} v3.1.1)`, () => {
    test('[MQTT-4.3.3-9] 3.1.1 has no Receive Maximum: unreleased QoS 2 publishes beyond the 5.0 limit are all acknowledged', async () => {
      const topic = `fc/${uniqueId()}`;
      const { client, wire } = await rawWriter(transport, 4);
      for (let i = 1; i <= 4; i++) writeRaw(client, publishBytes(4, topic, 2, 60000 + i));
      await wire.count('pubrec', 4);
      assert.equal(wire.closed, false);
      await close(client);
    });
  });
}

for (const { transport, version, name } of matrix) {
  describe(`Maximum Packet Size toward the broker (${name})`, () => {
    test('[MQTT-3.2.2-15] a PUBLISH larger than the broker\'s Maximum Packet Size closes the connection (5.0: DISCONNECT 0x95) and is not delivered', async () => {
      const topic = `mps/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      await sub.subscribeAsync(topic, { qos: 1 });
      const { client, wire } = await rawWriter(transport, version);
      writeRaw(client, publishBytes(version, topic, 1, 1, Buffer.alloc(2000, 0x61)));
      await closedWith(wire, version, 0x95);
      assert.equal(await expectNoMessage(sub, 200), true);
      // A packet just under the limit is fine for everyone else
      const pub = await connect(broker, transport, version);
      const got = collect(sub, 1);
      await pub.publishAsync(topic, Buffer.alloc(900, 0x62), { qos: 1 });
      assert.equal((await got)[0]!.payload.length, 900);
      await close(sub, client, pub);
    });

    test('[MQTT-3.2.2-15] a PUBLISH far above the limit (64 KiB) closes the connection and is not delivered', async () => {
      const topic = `mps/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      await sub.subscribeAsync(topic, { qos: 1 });
      const { client, wire } = await rawWriter(transport, version);
      writeRaw(client, publishBytes(version, topic, 1, 1, Buffer.alloc(64 * 1024, 0x61)));
      await wire.whenClosed();
      assert.equal(await expectNoMessage(sub, 200), true);
      await close(sub, client);
    });
  });
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`Maximum Packet Size toward the client (${transport} v5)`, () => {
    for (const qos of [0, 1] as const) {
      test(`[MQTT-3.1.2-24] [MQTT-3.1.2-25] a QoS ${qos} message larger than the subscriber's Maximum Packet Size is skipped; smaller ones arrive`, async () => {
        const topic = `mps/${uniqueId()}`;
        const sub = await connect(broker, transport, v5, { properties: { maximumPacketSize: 200, receiveMaximum: 1 } });
        const wire = tap(sub);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync(topic, { qos: 1 });
        const got = collect(sub, 2);
        await pub.publishAsync(topic, 'small 1', { qos });
        await pub.publishAsync(topic, Buffer.alloc(500, 0x61), { qos });
        // With Receive Maximum 1, this one only arrives if the skipped message counted as delivered
        await pub.publishAsync(topic, 'small 2', { qos });
        const msgs = await got;
        assert.deepEqual(msgs.map((m) => m.payload.toString()), ['small 1', 'small 2']);
        assert.equal(await expectNoMessage(sub, 200), true);
        for (const p of wire.packets) {
          const len = p.length ?? 0;
          const size = 1 + (len < 128 ? 1 : 2) + len;
          assert.ok(size <= 200, `a ${p.cmd} of ${size} bytes exceeded the client's maximum`);
        }
        await close(sub, pub);
      });
    }

    test('[MQTT-3.1.2-25] [MQTT-3.3.2-11] a skipped message does not leave the subscriber with a Topic Alias it never learned', async () => {
      const topic = `mps/${uniqueId()}`;
      const sub = await connect(broker, transport, v5, { properties: { maximumPacketSize: 200, topicAliasMaximum: 5 } });
      // MQTT.js reports an alias it was never given as an error and drops the connection
      const failed = new Promise<never>((_, reject) => sub.once('error', reject));
      const pub = await connect(broker, transport, v5);
      await sub.subscribeAsync(topic, { qos: 1 });
      const got = collect(sub, 2);
      await pub.publishAsync(topic, Buffer.alloc(500, 0x61), { qos: 1 }); // too large: skipped
      await pub.publishAsync(topic, 'small 1', { qos: 1 });
      await pub.publishAsync(topic, 'small 2', { qos: 1 });
      const msgs = await Promise.race([got, failed]);
      assert.deepEqual(msgs.map((m) => [m.topic, m.payload.toString()]), [[topic, 'small 1'], [topic, 'small 2']]);
      await close(sub, pub);
    });
  });
}
