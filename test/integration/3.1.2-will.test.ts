// Will messages (MQTT 5 §3.1.2.5, §3.1.3.2; 3.1.1 §3.1.2.5): when the will is published, when
// it is discarded, its retain flag and QoS, and the 5.0 Will Delay Interval.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { encode } from '../helpers/mqtt-wire.ts';
import { tap, writeRaw } from '../helpers/packet-log.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

/** A subscriber to `topic` at QoS 2 on the given transport and version. */
async function subscriber(transport: Transport, version: Version, topic: string): Promise<MqttClient> {
  const sub = await connect(broker, transport, version);
  await sub.subscribeAsync(topic, { qos: 2 });
  return sub;
}

for (const { transport, version, name } of matrix) {
  describe(`will (${name})`, () => {
    test('[MQTT-3.1.2-8] the will is published when the network connection fails', async () => {
      const topic = `will/${uniqueId()}`;
      const sub = await subscriber(transport, version, topic);
      const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from('gone'), qos: 1, retain: false } });
      const got = collect(sub, 1);
      client.stream.destroy();
      const [m] = await got;
      assert.equal(m!.topic, topic);
      assert.equal(m!.payload.toString(), 'gone');
      await close(sub, client);
    });

    test('[MQTT-3.1.2-8] [MQTT-3.1.2-22] the will is published when the keep alive times out', async () => {
      const topic = `will/${uniqueId()}`;
      const sub = await subscriber(transport, version, topic);
      const got = collect(sub, 1, 6000);
      const started = Date.now();
      // A raw client on this variant's transport that never sends another byte after CONNECT
      const silent = await RawPeer.open(broker, transport, version);
      silent.sendPacket({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, clientId: uniqueId('silent'), keepalive: 1,
        will: { topic, payload: Buffer.from('timed out'), qos: 0, retain: false },
      });
      assert.equal((await silent.next()).cmd, 'connack');
      const [m] = await got;
      const elapsed = Date.now() - started;
      assert.equal(m!.payload.toString(), 'timed out');
      // 1.5 × keep alive without a packet; not sooner than the keep alive itself
      assert.ok(elapsed >= 1000, `will arrived after only ${elapsed} ms`);
      const packets = await silent.closed(5000);
      if (version === 5) {
        const disconnect = packets.find((p) => p.cmd === 'disconnect');
        assert.equal(disconnect?.reasonCode, 0x8d, 'DISCONNECT Keep alive timeout before closing');
      }
      await close(sub);
    });

    test('[MQTT-3.1.2-8] [MQTT-3.1.0-2] the will is published when the connection ends on a protocol error (second CONNECT)', async () => {
      const topic = `will/${uniqueId()}`;
      const sub = await subscriber(transport, version, topic);
      const clientId = uniqueId('bad');
      const client = await connect(broker, transport, version, { clientId, will: { topic, payload: Buffer.from('broken'), qos: 1, retain: false } });
      client.on('error', () => undefined);
      const wire = tap(client);
      const got = collect(sub, 1);
      writeRaw(client, encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 0 }, version));
      const [m] = await got;
      assert.equal(m!.payload.toString(), 'broken');
      const packets = await wire.whenClosed();
      if (version === 5) {
        assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, 0x82, 'DISCONNECT Protocol Error');
      }
      await close(sub, client);
    });

    test('[MQTT-3.1.2-10] the will is not published after a normal DISCONNECT', async () => {
      const topic = `will/${uniqueId()}`;
      const sub = await subscriber(transport, version, topic);
      const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from('no'), qos: 1, retain: false } });
      await client.endAsync();
      assert.equal(await expectNoMessage(sub, 500), true, 'will was published after a normal DISCONNECT');
      await close(sub);
    });

    test('[MQTT-3.1.2-17] a will with Will Retain 1 is published as a retained message', async () => {
      const topic = `will/${uniqueId()}`;
      const live = await subscriber(transport, version, topic);
      const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from('kept'), qos: 1, retain: true } });
      const got = collect(live, 1);
      client.stream.destroy();
      await got;
      const late = await connect(broker, transport, version);
      const retained = collect(late, 1);
      await late.subscribeAsync(topic, { qos: 1 });
      const [m] = await retained;
      assert.equal(m!.payload.toString(), 'kept');
      assert.equal(m!.packet.retain, true);
      await late.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true }); // clear the retained message
      await close(live, late, client);
    });

    test('[MQTT-3.1.2-16] a will with Will Retain 0 is not retained', async () => {
      const topic = `will/${uniqueId()}`;
      const live = await subscriber(transport, version, topic);
      const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from('once'), qos: 1, retain: false } });
      const got = collect(live, 1);
      client.stream.destroy();
      await got;
      const late = await connect(broker, transport, version);
      await late.subscribeAsync(topic, { qos: 1 });
      assert.equal(await expectNoMessage(late, 300), true);
      await close(live, late, client);
    });

    for (const qos of [0, 1, 2] as const) {
      test(`[MQTT-3.1.2-12] a will with Will QoS ${qos} is published at QoS ${qos}`, async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from(`q${qos}`), qos, retain: false } });
        const got = collect(sub, 1);
        client.stream.destroy();
        const [m] = await got;
        assert.equal(m!.payload.toString(), `q${qos}`);
        assert.equal(m!.packet.qos, qos);
        await close(sub, client);
      });
    }

    if (version === 5) {
      test('[MQTT-3.1.2-8] DISCONNECT 0x04 (Disconnect with Will Message) publishes the will', async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, { will: { topic, payload: Buffer.from('asked'), qos: 1, retain: false } });
        const got = collect(sub, 1);
        await client.endAsync(false, { reasonCode: 0x04 });
        const [m] = await got;
        assert.equal(m!.payload.toString(), 'asked');
        await close(sub);
      });

      test('[MQTT-3.1.3-9] a will with a Will Delay Interval is published only after the delay', async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, {
          clean: false, properties: { sessionExpiryInterval: 30 },
          will: { topic, payload: Buffer.from('late'), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
        });
        const got = collect(sub, 1, 5000);
        const started = Date.now();
        client.stream.destroy();
        const [m] = await got;
        const elapsed = Date.now() - started;
        assert.equal(m!.payload.toString(), 'late');
        assert.ok(elapsed >= 950, `will published after ${elapsed} ms, before its 1 s delay`);
        await close(sub, client);
      });

      test('[MQTT-3.1.3-9] the will is not published if the client reconnects before the Will Delay Interval', async () => {
        const topic = `will/${uniqueId()}`;
        const clientId = uniqueId('delayed');
        const sub = await subscriber(transport, version, topic);
        const opts = {
          clientId, clean: false, properties: { sessionExpiryInterval: 60 },
          will: { topic, payload: Buffer.from('never'), qos: 1 as const, retain: false, properties: { willDelayInterval: 2 } },
        };
        const first = await connect(broker, transport, version, opts);
        const closed = new Promise<void>((resolve) => first.once('close', () => resolve()));
        first.stream.destroy();
        await closed;
        // Reconnect to the same session without a will
        const second = await connect(broker, transport, version, { clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
        assert.equal(second.connected, true);
        assert.equal(await expectNoMessage(sub, 2500), true, 'will was published although the session was resumed');
        await second.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
        await close(sub, first);
      });

      test('[MQTT-3.1.3-9] the will is published when the session ends before the Will Delay Interval', async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, {
          clean: false, properties: { sessionExpiryInterval: 1 },
          will: { topic, payload: Buffer.from('expired'), qos: 1, retain: false, properties: { willDelayInterval: 10 } },
        });
        // Waiting at most 9 s keeps the check below the 10 s Will Delay without a bound on speed
        const got = collect(sub, 1, 9000);
        const started = Date.now();
        client.stream.destroy();
        const [m] = await got;
        const elapsed = Date.now() - started;
        assert.equal(m!.payload.toString(), 'expired');
        assert.ok(elapsed >= 900, `will published after ${elapsed} ms; the session expires after 1 s`);
        await close(sub, client);
      });

      test('[MQTT-3.1.3-9] with Session Expiry 0 a delayed will is published at once (the session ends with the connection)', async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, {
          will: { topic, payload: Buffer.from('now'), qos: 1, retain: false, properties: { willDelayInterval: 10 } },
        });
        const got = collect(sub, 1, 2000);
        client.stream.destroy();
        const [m] = await got;
        assert.equal(m!.payload.toString(), 'now');
        await close(sub, client);
      });

      test('[MQTT-3.1.3-10] will properties (user properties, content type) are passed on', async () => {
        const topic = `will/${uniqueId()}`;
        const sub = await subscriber(transport, version, topic);
        const client = await connect(broker, transport, version, {
          will: {
            topic, payload: Buffer.from('{}'), qos: 1, retain: false,
            properties: { contentType: 'application/json', userProperties: { why: 'test' }, payloadFormatIndicator: true },
          },
        });
        const got = collect(sub, 1);
        client.stream.destroy();
        const [m] = await got;
        assert.equal(m!.packet.properties?.contentType, 'application/json');
        assert.deepEqual({ ...m!.packet.properties?.userProperties }, { why: 'test' });
        assert.equal(m!.packet.properties?.payloadFormatIndicator, true);
        await close(sub, client);
      });
    }
  });
}

