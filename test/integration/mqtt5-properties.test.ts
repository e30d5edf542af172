// MQTT 5 properties over both transports: Message Expiry Interval, pass-through of the
// application properties, Payload Format Indicator validation, Topic Aliases in both
// directions, enhanced authentication refusal and the limits and switches CONNACK advertises.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ErrorWithReasonCode, MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, quietFor, startClient, uniqueId, type Transport } from '../helpers/clients.ts';
import { encode } from '../helpers/mqtt-wire.ts';
import { tap, writeRaw, type PacketLog } from '../helpers/packet-log.ts';

let broker: BrokerProcess;
/** A broker with every limit lowered and every optional feature switched off. */
let limited: BrokerProcess;
before(async () => {
  await Promise.all([
    startBroker().then((b) => { broker = b; }),
    startBroker([
      '--receive-maximum', '10', '--max-packet-size', '2048', '--topic-alias-maximum', '5', '--maximum-qos', '1',
      '--retain-available=false', '--wildcard-subscriptions=false', '--shared-subscriptions=false',
      '--subscription-identifiers=false',
    ]).then((b) => { limited = b; }),
  ]);
});
after(async () => { await Promise.all([broker?.stop(), limited?.stop()]); });

const v5 = 5 as const;

/** Rejection whose MQTT reason code is `code`. */
function withCode(code: number) {
  return (e: unknown): boolean => {
    assert.equal((e as ErrorWithReasonCode).code, code, `expected reason code 0x${code.toString(16)}, got ${String(e)}`);
    return true;
  };
}

/** Wait for the broker's DISCONNECT on a tapped connection, then for the close. */
async function disconnectedWith(log: PacketLog, code: number): Promise<void> {
  const packets = await log.whenClosed();
  const d = packets.find((p) => p.cmd === 'disconnect');
  assert.ok(d, `expected DISCONNECT 0x${code.toString(16)} before the close; got ${log.describe()}`);
  assert.equal(d.reasonCode, code);
}

/** Open a persistent session subscribed to `topic` at QoS 1, then disconnect normally. */
async function offlineSession(transport: Transport, clientId: string, topic: string): Promise<void> {
  const sub = await connect(broker, transport, v5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
  await sub.subscribeAsync(topic, { qos: 1 });
  await sub.endAsync();
}

/** Resume the session of `clientId` and collect `n` messages delivered from its queue. */
async function resume(transport: Transport, clientId: string, n: number): Promise<{ client: MqttClient; got: ReturnType<typeof collect> }> {
  const { client, connack } = startClient(broker, transport, v5, { clientId, clean: false, properties: { sessionExpiryInterval: 0 } });
  const got = collect(client, n);
  const ack = await connack;
  assert.equal(ack.sessionPresent, true);
  return { client, got };
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`MQTT 5 properties (${transport})`, () => {
    describe('Message Expiry Interval', () => {
      test('[MQTT-3.3.2-5] a message that expires while queued for an offline session is never delivered', async () => {
        const topic = `exp/${uniqueId()}`;
        const clientId = uniqueId('exp');
        await offlineSession(transport, clientId, topic);
        const pub = await connect(broker, transport, v5);
        await pub.publishAsync(topic, 'expires', { qos: 1, properties: { messageExpiryInterval: 1 } });
        await pub.publishAsync(topic, 'stays', { qos: 1 });
        await quietFor(1300); // let the first message's 1 s expiry pass while the session is offline
        const { client, got } = await resume(transport, clientId, 1);
        const [m] = await got;
        assert.equal(m!.payload.toString(), 'stays');
        assert.equal(await expectNoMessage(client, 300), true, 'the expired message was delivered');
        await close(pub, client);
      });

      test('[MQTT-3.3.2-6] a message delivered from the queue carries the expiry interval minus its waiting time', async () => {
        const topic = `exp/${uniqueId()}`;
        const clientId = uniqueId('exp');
        await offlineSession(transport, clientId, topic);
        const pub = await connect(broker, transport, v5);
        await pub.publishAsync(topic, 'waited', { qos: 1, properties: { messageExpiryInterval: 60 } });
        await quietFor(1100);
        const { client, got } = await resume(transport, clientId, 1);
        const [m] = await got;
        const left = m!.packet.properties?.messageExpiryInterval;
        assert.ok(left !== undefined && left >= 55 && left <= 59, `Message Expiry Interval ${left} after waiting > 1 s`);
        await close(pub, client);
      });

      test('[MQTT-3.3.2-6] a message forwarded at once keeps its Message Expiry Interval; none is added otherwise', async () => {
        const topic = `exp/${uniqueId()}`;
        const sub = await connect(broker, transport, v5);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync(topic, { qos: 1 });
        const got = collect(sub, 2);
        await pub.publishAsync(topic, 'a', { qos: 1, properties: { messageExpiryInterval: 30 } });
        await pub.publishAsync(topic, 'b', { qos: 1 });
        const [a, b] = await got;
        assert.ok([29, 30].includes(a!.packet.properties?.messageExpiryInterval ?? -1));
        assert.equal(b!.packet.properties?.messageExpiryInterval, undefined);
        await close(sub, pub);
      });
    });

    describe('application properties', () => {
      for (const qos of [0, 1, 2] as const) {
        test(`[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20] properties pass through unchanged at QoS ${qos}`, async () => {
          const topic = `props/${uniqueId()}`;
          const sub = await connect(broker, transport, v5);
          const pub = await connect(broker, transport, v5);
          await sub.subscribeAsync(topic, { qos: 2 });
          const got = collect(sub, 1);
          const correlationData = Buffer.from([0x00, 0x01, 0xfe, 0xff]);
          await pub.publishAsync(topic, 'héllo', {
            qos,
            properties: {
              payloadFormatIndicator: true, contentType: 'text/plain; charset=utf-8', responseTopic: `reply/${uniqueId()}`.slice(0, 40),
              correlationData, userProperties: { z: 'last?', a: ['1', '2', '3'], 'ключ': 'значение' },
            },
          });
          const [m] = await got;
          const p = m!.packet.properties!;
          assert.equal(m!.payload.toString(), 'héllo');
          assert.equal(p.payloadFormatIndicator, true);
          assert.equal(p.contentType, 'text/plain; charset=utf-8');
          assert.match(p.responseTopic ?? '', /^reply\//);
          assert.deepEqual(p.correlationData, correlationData);
          // Order is kept: keys in sending order, repeated values in sending order
          assert.deepEqual(Object.entries(p.userProperties ?? {}), [['z', 'last?'], ['a', ['1', '2', '3']], ['ключ', 'значение']]);
          await close(sub, pub);
        });
      }

      test('[MQTT-3.3.2-4] Payload Format Indicator 0 is passed on as 0, and is absent when the publisher sent none', async () => {
        const topic = `props/${uniqueId()}`;
        const sub = await connect(broker, transport, v5);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync(topic, { qos: 1 });
        const got = collect(sub, 2);
        await pub.publishAsync(topic, Buffer.from([0xff]), { qos: 1, properties: { payloadFormatIndicator: false } });
        await pub.publishAsync(topic, Buffer.from([0xff]), { qos: 1 });
        const [a, b] = await got;
        assert.equal(a!.packet.properties?.payloadFormatIndicator, false);
        assert.equal(b!.packet.properties?.payloadFormatIndicator, undefined);
        await close(sub, pub);
      });

      for (const qos of [1, 2] as const) {
        test(`[MQTT-3.3.2-4] (§3.3.2.3.2) a QoS ${qos} payload that is not UTF-8 despite Payload Format Indicator 1 is refused with 0x99 and not delivered`, async () => {
          const topic = `props/${uniqueId()}`;
          const sub = await connect(broker, transport, v5);
          const pub = await connect(broker, transport, v5);
          await sub.subscribeAsync(topic, { qos: 2 });
          await assert.rejects(
            pub.publishAsync(topic, Buffer.from([0x61, 0xc3, 0x28]), { qos, properties: { payloadFormatIndicator: true } }),
            withCode(0x99),
          );
          assert.equal(await expectNoMessage(sub, 300), true, 'the invalid payload was delivered');
          // The connection stays usable
          const got = collect(sub, 1);
          await pub.publishAsync(topic, 'fine', { qos, properties: { payloadFormatIndicator: true } });
          assert.equal((await got)[0]!.payload.toString(), 'fine');
          await close(sub, pub);
        });
      }

      test('(§3.3.2.3.2) a QoS 0 payload that is not UTF-8 despite Payload Format Indicator 1 ends the connection with 0x99', async () => {
        const topic = `props/${uniqueId()}`;
        const sub = await connect(broker, transport, v5);
        const pub = await connect(broker, transport, v5);
        pub.on('error', () => undefined);
        await sub.subscribeAsync(topic, { qos: 2 });
        const wire = tap(pub);
        pub.publish(topic, Buffer.from([0xff, 0xfe]), { qos: 0, properties: { payloadFormatIndicator: true } });
        await disconnectedWith(wire, 0x99);
        assert.equal(await expectNoMessage(sub, 200), true);
        await close(sub, pub);
      });
    });

    describe('Topic Alias', () => {
      test('[MQTT-3.3.2-12] a topic alias set by the client is resolved for subscribers', async () => {
        const topic = `alias/${uniqueId()}`;
        const other = `alias/${uniqueId()}`;
        const sub = await connect(broker, transport, v5);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync([topic, other], { qos: 1 });
        const got = collect(sub, 4);
        await pub.publishAsync(topic, 'set', { qos: 1, properties: { topicAlias: 1 } });
        await pub.publishAsync('', 'use', { qos: 1, properties: { topicAlias: 1 } });
        // Re-map alias 1 to another topic
        await pub.publishAsync(other, 'reset', { qos: 1, properties: { topicAlias: 1 } });
        await pub.publishAsync('', 'use again', { qos: 1, properties: { topicAlias: 1 } });
        const msgs = (await got).map((m) => [m.topic, m.payload.toString()]);
        assert.deepEqual(msgs, [[topic, 'set'], [topic, 'use'], [other, 'reset'], [other, 'use again']]);
        await close(sub, pub);
      });

      test('[MQTT-3.3.2-9] a Topic Alias above the Topic Alias Maximum ends the connection with 0x94', async () => {
        const pub = await connect(limited, transport, v5);
        pub.on('error', () => undefined);
        const wire = tap(pub);
        writeRaw(pub, encode({ cmd: 'publish', topic: `alias/${uniqueId()}`, payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 6 } }, v5));
        await disconnectedWith(wire, 0x94);
        await close(pub);
      });

      test('[MQTT-3.3.2-8] Topic Alias 0 ends the connection with 0x94', async () => {
        const pub = await connect(broker, transport, v5);
        pub.on('error', () => undefined);
        const wire = tap(pub);
        writeRaw(pub, encode({ cmd: 'publish', topic: `alias/${uniqueId()}`, payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 0 } }, v5));
        await disconnectedWith(wire, 0x94);
        await close(pub);
      });

      test('[MQTT-3.3.2-7] topic aliases are not carried over to a new connection', async () => {
        const clientId = uniqueId('alias');
        const topic = `alias/${uniqueId()}`;
        const first = await connect(broker, transport, v5, { clientId, clean: false, properties: { sessionExpiryInterval: 30 } });
        await first.publishAsync(topic, 'set', { qos: 1, properties: { topicAlias: 2 } });
        await first.endAsync();
        const second = await connect(broker, transport, v5, { clientId, clean: false, properties: { sessionExpiryInterval: 0 } });
        second.on('error', () => undefined);
        const wire = tap(second);
        // An empty topic name with an alias this connection never set: a Protocol Error
        writeRaw(second, encode({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } }, v5));
        await disconnectedWith(wire, 0x82);
        await close(second);
      });

      test('[MQTT-3.3.2-11] a subscriber with Topic Alias Maximum 2 gets aliases, never above 2, and the second message on a topic has an empty topic name', async () => {
        const base = `alias/${uniqueId()}`;
        const [ta, tb, tc] = [`${base}/a`, `${base}/b`, `${base}/c`];
        const sub = await connect(broker, transport, v5, { properties: { topicAliasMaximum: 2 } });
        const wire = tap(sub);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync(`${base}/+`, { qos: 1 });
        const got = collect(sub, 6);
        for (const t of [ta, ta, tb, tb, tc, tc]) await pub.publishAsync(t, t.slice(-1), { qos: 1 });
        const msgs = await got;
        // MQTT.js resolves aliases: every message is reported on its real topic
        assert.deepEqual(msgs.map((m) => m.topic), [ta, ta, tb, tb, tc, tc]);
        const onWire = wire.of('publish').map((p) => ({ topic: String(p.topic), alias: p.properties?.topicAlias }));
        assert.equal(onWire.length, 6);
        assert.deepEqual(onWire.slice(0, 4), [
          { topic: ta, alias: onWire[0]!.alias }, { topic: '', alias: onWire[0]!.alias },
          { topic: tb, alias: onWire[2]!.alias }, { topic: '', alias: onWire[2]!.alias },
        ]);
        assert.notEqual(onWire[0]!.alias, onWire[2]!.alias);
        for (const p of onWire) assert.ok(p.alias === undefined || (p.alias >= 1 && p.alias <= 2), `alias ${p.alias} out of range`);
        // Aliases used up: the third topic goes by name every time (or re-uses an alias after sending its name)
        assert.equal(onWire[4]!.topic, tc);
        await close(sub, pub);
      });

      test('[MQTT-3.3.2-11] a subscriber without Topic Alias Maximum never gets a Topic Alias', async () => {
        const topic = `alias/${uniqueId()}`;
        const sub = await connect(broker, transport, v5);
        const wire = tap(sub);
        const pub = await connect(broker, transport, v5);
        await sub.subscribeAsync(topic, { qos: 1 });
        const got = collect(sub, 3);
        for (let i = 0; i < 3; i++) await pub.publishAsync(topic, String(i), { qos: 1 });
        await got;
        for (const p of wire.of('publish')) {
          assert.equal(p.properties?.topicAlias, undefined);
          assert.equal(String(p.topic), topic);
        }
        await close(sub, pub);
      });
    });

    describe('enhanced authentication', () => {
      test('[MQTT-4.12.0-1] CONNECT with an unsupported Authentication Method is refused with CONNACK 0x8C', async () => {
        const { client, connack } = startClient(broker, transport, v5, { properties: { authenticationMethod: 'SCRAM-SHA-256' } });
        await assert.rejects(connack, withCode(0x8c));
        await close(client);
      });

      test('[MQTT-3.15.2-1] an AUTH packet without a negotiated Authentication Method ends the connection with 0x82', async () => {
        const client = await connect(broker, transport, v5);
        client.on('error', () => undefined);
        const wire = tap(client);
        writeRaw(client, encode({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'SCRAM-SHA-256' } }, v5));
        await disconnectedWith(wire, 0x82);
        await close(client);
      });
    });

    describe('CONNACK limits and feature switches', () => {
      test('[MQTT-3.2.2-9] CONNACK advertises the configured limits and switched-off features', async () => {
        const { client, connack } = startClient(limited, transport, v5);
        const p = (await connack).properties ?? {};
        assert.equal(p.receiveMaximum, 10);
        assert.equal(p.maximumPacketSize, 2048);
        assert.equal(p.topicAliasMaximum, 5);
        assert.equal(p.maximumQoS, 1);
        assert.equal(p.retainAvailable, false);
        assert.equal(p.wildcardSubscriptionAvailable, false);
        assert.equal(p.sharedSubscriptionAvailable, false);
        assert.equal(p.subscriptionIdentifiersAvailable, false);
        await close(client);
      });

      test('[MQTT-3.2.2-9] with the defaults CONNACK advertises no restriction', async () => {
        const { client, connack } = startClient(broker, transport, v5);
        const p = (await connack).properties ?? {};
        assert.equal(p.receiveMaximum ?? 65535, 65535);
        assert.equal(p.maximumQoS, undefined); // absent: QoS 2
        assert.notEqual(p.retainAvailable, false);
        assert.notEqual(p.wildcardSubscriptionAvailable, false);
        assert.notEqual(p.sharedSubscriptionAvailable, false);
        assert.notEqual(p.subscriptionIdentifiersAvailable, false);
        assert.equal(p.topicAliasMaximum, 64);
        assert.equal(p.maximumPacketSize, 1024 * 1024);
        await close(client);
      });

      test('[MQTT-3.8.4-6] SUBACK reports 0xA2, 0x9E and 0xA1 per filter for switched-off features, and grants the rest', async () => {
        const client = await connect(limited, transport, v5);
        const wire = tap(client);
        const base = `feat/${uniqueId()}`;
        await assert.rejects(client.subscribeAsync({ [`${base}/+`]: { qos: 1 }, [`$share/g/${base}`]: { qos: 1 }, [base]: { qos: 1 } }));
        const suback = await wire.first('suback');
        assert.deepEqual(suback.granted, [0xa2, 0x9e, 0x01]);
        await assert.rejects(client.subscribeAsync(`${base}/x`, { qos: 1, properties: { subscriptionIdentifier: 7 } }));
        await wire.count('suback', 2);
        assert.deepEqual(wire.of('suback')[1]!.granted, [0xa1]);
        // The connection stays usable and the plain subscription works
        const got = collect(client, 1);
        await client.publishAsync(base, 'ok', { qos: 1 });
        assert.equal((await got)[0]!.payload.toString(), 'ok');
        await close(client);
      });

      test('[MQTT-3.2.2-10] SUBSCRIBE at QoS 2 is accepted and granted the Maximum QoS', async () => {
        const client = await connect(limited, transport, v5);
        const granted = await client.subscribeAsync(`feat/${uniqueId()}`, { qos: 2 });
        assert.equal(granted[0]!.qos, 1);
        await close(client);
      });

      test('[MQTT-3.2.2-11] a PUBLISH above the Maximum QoS ends the connection with 0x9B', async () => {
        const client = await connect(limited, transport, v5);
        client.on('error', () => undefined);
        const wire = tap(client);
        writeRaw(client, encode({ cmd: 'publish', topic: `feat/${uniqueId()}`, payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false }, v5));
        await disconnectedWith(wire, 0x9b);
        await close(client);
      });

      test('[MQTT-3.2.2-14] a retained PUBLISH when Retain Available is 0 ends the connection with 0x9A', async () => {
        const client = await connect(limited, transport, v5);
        client.on('error', () => undefined);
        const wire = tap(client);
        writeRaw(client, encode({ cmd: 'publish', topic: `feat/${uniqueId()}`, payload: Buffer.from('x'), qos: 0, retain: true, dup: false }, v5));
        await disconnectedWith(wire, 0x9a);
        await close(client);
      });

      test('[MQTT-3.2.2-12] a CONNECT whose Will QoS exceeds the Maximum QoS is refused (CONNACK 0x9B)', async () => {
        const { client, connack } = startClient(limited, transport, v5, { will: { topic: `feat/${uniqueId()}`, payload: Buffer.from('w'), qos: 2, retain: false } });
        await assert.rejects(connack, withCode(0x9b));
        await close(client);
      });

      test('[MQTT-3.2.2-13] a CONNECT with Will Retain 1 when Retain Available is 0 is refused (CONNACK 0x9A)', async () => {
        const { client, connack } = startClient(limited, transport, v5, { will: { topic: `feat/${uniqueId()}`, payload: Buffer.from('w'), qos: 0, retain: true } });
        await assert.rejects(connack, withCode(0x9a));
        await close(client);
      });
    });
  });
}
