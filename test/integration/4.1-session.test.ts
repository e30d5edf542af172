// Sessions (MQTT 5 §4.1, §3.1.2.4, §3.1.2.11.2, §3.1.4, §3.2.2.1.1, §3.14.2.2.2) with real MQTT.js
// clients over [tcp, ws] × [3.1.1, 5.0]: clean start and Session Present, offline queueing, takeover,
// session expiry and its change on DISCONNECT.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import type { IDisconnectPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The client's next `close` event. */
const closed = (client: MqttClient): Promise<void> => new Promise((resolve) => { client.once('close', () => resolve()); });

/**
 * Start an MQTT.js client and return it at once, with its CONNACK to await: listeners attached
 * before the CONNACK arrives see messages the broker sends right behind it.
 */
function start(transport: Transport, version: Version, opts: IClientOptions): { client: MqttClient; connack: Promise<IConnackPacket> } {
  const url = transport === 'tcp' ? broker.mqttUrl : broker.wsUrl();
  const client = mqtt.connect(url, { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, connack };
}

/** Options for a session that outlives its connection: clean session 0 (3.1.1), expiry > 0 (5.0). */
function persistent(version: Version, clientId: string, expirySec = 60): IClientOptions {
  return version === 5
    ? { clientId, clean: false, properties: { sessionExpiryInterval: expirySec } }
    : { clientId, clean: false };
}

/** Options for a session that ends with its connection: clean session 1 (3.1.1), expiry 0 (5.0). */
function transient(version: Version, clientId: string): IClientOptions {
  return version === 5 ? { clientId, clean: false } : { clientId, clean: true };
}

/** End a client's session on the broker: connect with clean start and disconnect normally. */
async function discard(transport: Transport, version: Version, clientId: string): Promise<void> {
  const c = await connect(broker, transport, version, { clientId, clean: true });
  await c.endAsync();
}

// The combinations run side by side: the expiry tests mostly wait
describe('sessions', { concurrency: true }, () => {
  for (const { transport, version, name } of matrix) {
    describe(`sessions (${name})`, () => {
      test('[MQTT-3.2.2-3] clean start 0 resumes the session: Session Present 1, subscriptions and offline QoS 1 messages kept', async () => {
        const id = uniqueId('sess');
        const topic = `s/${uniqueId()}`;
        const first = start(transport, version, persistent(version, id));
        assert.equal((await first.connack).sessionPresent, false, 'no session existed yet [MQTT-3.1.2-6]');
        await first.client.subscribeAsync(topic, { qos: 1 });
        await first.client.endAsync();

        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'offline-1', { qos: 1 });
        await pub.publishAsync(topic, 'offline-2', { qos: 1 });

        const second = start(transport, version, persistent(version, id));
        const queued = collect(second.client, 2);
        assert.equal((await second.connack).sessionPresent, true);
        const got = await queued;
        assert.deepEqual(got.map((m) => m.payload.toString()), ['offline-1', 'offline-2']);
        assert.deepEqual(got.map((m) => m.packet.qos), [1, 1]);

        // [MQTT-3.1.2-5] the subscription is live again without a new SUBSCRIBE
        const live = collect(second.client, 1);
        await pub.publishAsync(topic, 'live', { qos: 1 });
        assert.equal((await live)[0]!.payload.toString(), 'live');
        await close(second.client, pub);
        await discard(transport, version, id);
      });

      test('[MQTT-3.2.2-2] clean start 1 discards the session: Session Present 0, queued messages and subscriptions gone', async () => {
        const id = uniqueId('sess');
        const topic = `s/${uniqueId()}`;
        const first = start(transport, version, persistent(version, id));
        await first.connack;
        await first.client.subscribeAsync(topic, { qos: 1 });
        await first.client.endAsync();

        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'queued', { qos: 1 });

        // [MQTT-3.1.2-4] clean start discards the stored session and its queue
        const second = start(transport, version, { ...persistent(version, id), clean: true });
        const nothing = expectNoMessage(second.client, 500);
        assert.equal((await second.connack).sessionPresent, false);
        await pub.publishAsync(topic, 'after', { qos: 1 });
        assert.equal(await nothing, true, 'no queued message and no old subscription after clean start');
        await close(second.client, pub);
        await discard(transport, version, id);
      });

      test(`[MQTT-3.1.2-23] a session with ${version === 5 ? 'Session Expiry Interval 0' : 'clean session 1'} ends with its connection`, async () => {
        const id = uniqueId('sess');
        const topic = `s/${uniqueId()}`;
        const first = start(transport, version, transient(version, id));
        assert.equal((await first.connack).sessionPresent, false);
        await first.client.subscribeAsync(topic, { qos: 1 });
        await first.client.endAsync();

        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'lost', { qos: 1 });

        const second = start(transport, version, persistent(version, id));
        const nothing = expectNoMessage(second.client, 500);
        assert.equal((await second.connack).sessionPresent, false);
        await pub.publishAsync(topic, 'after', { qos: 1 });
        assert.equal(await nothing, true, 'the subscription ended with the first connection');
        await close(second.client, pub);
        await discard(transport, version, id);
      });

      test('[MQTT-3.1.4-3] a second connection with the same client id takes over; the first is disconnected', async () => {
        const id = uniqueId('take');
        const topic = `s/${uniqueId()}`;
        const old = await connect(broker, transport, version, { clientId: id });
        const disconnects: IDisconnectPacket[] = [];
        old.on('disconnect', (p: IDisconnectPacket) => disconnects.push(p));
        const oldClosed = closed(old);

        const next = await connect(broker, transport, version, { clientId: id });
        await oldClosed;
        if (version === 5) {
          assert.equal(disconnects.length, 1, 'the old 5.0 client gets DISCONNECT');
          assert.equal(disconnects[0]!.reasonCode, 0x8e);
          assert.equal(disconnects[0]!.properties?.sessionExpiryInterval, undefined); // [MQTT-3.14.2-2]
        } else {
          assert.equal(disconnects.length, 0, 'a 3.1.1 client is only closed');
        }
        // The new connection holds the client id and works
        await next.subscribeAsync(topic, { qos: 1 });
        const got = collect(next, 1);
        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'to-new', { qos: 1 });
        assert.equal((await got)[0]!.payload.toString(), 'to-new');
        assert.equal(old.connected, false);
        await close(next, pub, old);
      });

      test('[MQTT-3.1.4-3] takeover with clean start 0 keeps the session: Session Present 1, subscription kept', async () => {
        const id = uniqueId('take');
        const topic = `s/${uniqueId()}`;
        const first = start(transport, version, persistent(version, id));
        await first.connack;
        await first.client.subscribeAsync(topic, { qos: 1 });
        const oldClosed = closed(first.client);

        const second = start(transport, version, persistent(version, id));
        assert.equal((await second.connack).sessionPresent, true);
        await oldClosed;
        const got = collect(second.client, 1);
        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'kept', { qos: 1 });
        assert.equal((await got)[0]!.payload.toString(), 'kept');
        await close(second.client, pub, first.client);
        await discard(transport, version, id);
      });

      if (version === 5) {
        test('[MQTT-3.1.2-23] a session with Session Expiry Interval 1 s is gone 2 s after the disconnect', async () => {
          const id = uniqueId('exp');
          const first = start(transport, version, persistent(version, id, 1));
          await first.connack;
          await first.client.subscribeAsync(`s/${uniqueId()}`, { qos: 1 });
          await first.client.endAsync();
          await sleep(2000); // nothing observable happens while the session expires (1 s, plus slack for a slow broker)
          const second = start(transport, version, persistent(version, id));
          assert.equal((await second.connack).sessionPresent, false);
          await close(second.client);
          await discard(transport, version, id);
        });

        const changes: Array<{ connectSec: number; disconnectSec: number; waitMs: number; present: boolean }> = [
          { connectSec: 60, disconnectSec: 0, waitMs: 0, present: false },
          { connectSec: 60, disconnectSec: 1, waitMs: 2000, present: false },
          { connectSec: 1, disconnectSec: 60, waitMs: 2000, present: true },
        ];
        for (const { connectSec, disconnectSec, waitMs, present } of changes) {
          test(`[MQTT-3.1.2-23] DISCONNECT changing Session Expiry Interval ${connectSec} → ${disconnectSec} s is honoured (§3.14.2.2.2)`, async () => {
            const id = uniqueId('exp');
            const first = start(transport, version, persistent(version, id, connectSec));
            await first.connack;
            await first.client.subscribeAsync(`s/${uniqueId()}`, { qos: 1 });
            await first.client.endAsync(false, { properties: { sessionExpiryInterval: disconnectSec } });
            if (waitMs > 0) await sleep(waitMs); // nothing observable happens while the session expires (or not)
            const second = start(transport, version, persistent(version, id));
            assert.equal((await second.connack).sessionPresent, present);
            await close(second.client);
            await discard(transport, version, id);
          });
        }

        test('[MQTT-4.13.1-1] DISCONNECT setting a Session Expiry Interval after CONNECT had 0 is a Protocol Error (§3.14.2.2.2)', async () => {
          const id = uniqueId('exp');
          const willTopic = `will/${uniqueId()}`;
          const watcher = await connect(broker, transport, version);
          await watcher.subscribeAsync(willTopic, { qos: 1 });
          const will = collect(watcher, 1);

          const raw = await RawPeer.open(broker, transport, 5);
          raw.sendPacket({
            cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: id, clean: false, keepalive: 0,
            will: { topic: willTopic, payload: Buffer.from('gone'), qos: 1, retain: false },
          });
          const connack = (await raw.next()) as IConnackPacket;
          assert.equal(connack.reasonCode, 0);
          raw.sendPacket({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
          const [d, ...rest] = await raw.closed();
          assert.equal(d?.cmd, 'disconnect');
          assert.equal((d as IDisconnectPacket).reasonCode, 0x82);
          assert.deepEqual(rest, []);
          // Not a valid DISCONNECT: the will is published [MQTT-3.1.2-8] and the session did not become persistent
          assert.equal((await will)[0]!.payload.toString(), 'gone');
          const again = start(transport, version, persistent(version, id));
          assert.equal((await again.connack).sessionPresent, false);
          await close(again.client, watcher);
          await discard(transport, version, id);
        });
      }
    });
  }
});
