// Retained messages (MQTT 5 §3.3.1.3, §3.8.3.1 Retain Handling / Retain As Published) across
// [tcp, ws] × [3.1.1, 5.0] with real MQTT.js clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IClientSubscribeOptions, MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { Inbox, type Received } from '../helpers/inbox.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

/** A subscriber with its inbox. */
interface Sub {
  client: MqttClient;
  inbox: Inbox;
}

async function subscriber(transport: Transport, version: Version): Promise<Sub> {
  const client = await connect(broker, transport, version);
  return { client, inbox: new Inbox(client) };
}

/**
 * Subscribe `filter` and return what arrives for it on subscribing. Completeness without a sleep:
 * a retained marker on a '$' topic (no filter here can match it) is subscribed afterwards, so
 * every retained message of `filter` is on the wire before the marker.
 */
async function subscribeAndTakeRetained(s: Sub, filter: string, opts: IClientSubscribeOptions): Promise<Received[]> {
  const marker = `$marker/${uniqueId()}`;
  await s.client.publishAsync(marker, 'marker', { qos: 1, retain: true });
  const before = s.inbox.items.length;
  await s.client.subscribeAsync(filter, opts);
  await s.client.subscribeAsync(marker, { qos: 0 });
  await s.inbox.next(marker);
  const got = s.inbox.items.slice(before).filter((m) => m.topic !== marker);
  await s.client.unsubscribeAsync(marker);
  return got;
}

/** Publish and wait for the PUBACK/PUBCOMP, so the retained store is updated afterwards. */
async function publish(c: MqttClient, topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): Promise<void> {
  await c.publishAsync(topic, payload, { qos, retain });
}

for (const { transport, version, name } of matrix) {
  describe(`retained messages (${name})`, { timeout: 20_000 }, () => {
    test('[MQTT-3.3.1-5] [MQTT-3.3.1-9] a new subscriber receives the retained message with RETAIN 1', async () => {
      const topic = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        await publish(pub, topic, 'kept', 1, true);
        const got = await subscribeAndTakeRetained(s, topic, { qos: 1 });
        assert.deepEqual(got.map((m) => [m.topic, m.payload, m.qos, m.retain]), [[topic, 'kept', 1, true]]);
      } finally {
        await close(pub, s.client);
      }
    });

    test('[MQTT-3.3.1-5] a newer retained message replaces the previous one', async () => {
      const topic = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        await publish(pub, topic, 'first', 1, true);
        await publish(pub, topic, 'second', 0, true);
        await publish(pub, topic, 'third', 2, true);
        const got = await subscribeAndTakeRetained(s, topic, { qos: 2 });
        assert.deepEqual(got.map((m) => [m.payload, m.qos, m.retain]), [['third', 2, true]]);
      } finally {
        await close(pub, s.client);
      }
    });

    test('[MQTT-3.3.1-8] a message with RETAIN 0 neither stores nor replaces the retained message', async () => {
      const topic = `r/${uniqueId()}`;
      const other = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        await publish(pub, topic, 'retained', 1, true);
        await publish(pub, topic, 'live only', 1, false);
        await publish(pub, other, 'live only', 1, false);
        assert.deepEqual((await subscribeAndTakeRetained(s, topic, { qos: 1 })).map((m) => m.payload), ['retained']);
        assert.deepEqual(await subscribeAndTakeRetained(s, other, { qos: 1 }), []);
      } finally {
        await close(pub, s.client);
      }
    });

    test('[MQTT-3.3.1-6] [MQTT-3.3.1-7] an empty retained payload clears it; it still reaches current subscribers', async () => {
      const topic = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const live = await subscriber(transport, version);
      const later = await subscriber(transport, version);
      try {
        await publish(pub, topic, 'to be cleared', 1, true);
        await live.client.subscribeAsync(topic, { qos: 1 });
        await live.inbox.next(topic); // the retained one, on subscribing
        await publish(pub, topic, '', 1, true);
        await live.inbox.until(() => live.inbox.on(topic).length === 2, 'the empty message');
        const empty = live.inbox.on(topic)[1]!;
        assert.equal(empty.payload, '');
        assert.equal(empty.retain, false); // live delivery, no Retain As Published
        assert.deepEqual(await subscribeAndTakeRetained(later, topic, { qos: 1 }), []);
        // clearing again, or clearing a topic that never had one, is harmless
        await publish(pub, topic, '', 0, true);
        await publish(pub, `r/${uniqueId()}`, '', 1, true);
        assert.deepEqual(await subscribeAndTakeRetained(later, `${topic}/#`, { qos: 1 }), []);
      } finally {
        await close(pub, live.client, later.client);
      }
    });

    test('[MQTT-3.3.1-9] a wildcard subscription receives every matching retained message', async () => {
      const p = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        for (const t of [p, `${p}/a`, `${p}/b/c`, `${p}/`, `${p}x`, `${p}x/a`]) await publish(pub, t, `v:${t}`, 1, true);
        const all = await subscribeAndTakeRetained(s, `${p}/#`, { qos: 1 });
        assert.deepEqual(all.map((m) => m.topic).sort(), [p, `${p}/`, `${p}/a`, `${p}/b/c`].sort());
        for (const m of all) {
          assert.equal(m.retain, true);
          assert.equal(m.payload, `v:${m.topic}`);
        }
        const one = await subscribeAndTakeRetained(s, `${p}/+`, { qos: 1 });
        assert.deepEqual(one.map((m) => m.topic).sort(), [`${p}/`, `${p}/a`]);
        const mid = await subscribeAndTakeRetained(s, `+/${p.slice(2)}/b/+`, { qos: 1 });
        assert.deepEqual(mid.map((m) => m.topic), [`${p}/b/c`]);
      } finally {
        await close(pub, s.client);
      }
    });

    test('[MQTT-4.7.2-1] "#" and "+" do not deliver retained messages on "$" topics', async () => {
      const id = uniqueId();
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        await publish(pub, `$r/${id}`, 'dollar', 1, true);
        await publish(pub, `$SYS/${id}`, 'dollar', 1, true);
        const viaHash = await subscribeAndTakeRetained(s, '#', { qos: 0 });
        assert.deepEqual(viaHash.filter((m) => m.topic.startsWith('$')).map((m) => m.topic), []);
        assert.deepEqual(await subscribeAndTakeRetained(s, `+/${id}`, { qos: 0 }), []);
        const explicit = await subscribeAndTakeRetained(s, `$r/#`, { qos: 0 });
        assert.ok(explicit.some((m) => m.topic === `$r/${id}`));
      } finally {
        await close(pub, s.client);
      }
    });

    test('[MQTT-3.8.4-8] a retained message is downgraded to the granted QoS', async () => {
      const p = `r/${uniqueId()}`;
      const pub = await connect(broker, transport, version);
      const s = await subscriber(transport, version);
      try {
        await publish(pub, `${p}/q2`, 'two', 2, true);
        await publish(pub, `${p}/q1`, 'one', 1, true);
        for (const granted of [0, 1, 2] as const) {
          const got = await subscribeAndTakeRetained(s, `${p}/+`, { qos: granted });
          const qos = Object.fromEntries(got.map((m) => [m.payload, m.qos]));
          assert.deepEqual(qos, { two: Math.min(2, granted), one: Math.min(1, granted) }, `granted QoS ${granted}`);
          assert.ok(got.every((m) => m.retain));
        }
      } finally {
        await close(pub, s.client);
      }
    });

    if (version === 4) {
      test('[v3.1.1 MQTT-3.3.1-9] live messages to an established subscription have RETAIN 0', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await s.client.subscribeAsync(topic, { qos: 1 });
          await publish(pub, topic, 'retained', 1, true);
          await publish(pub, topic, 'plain', 1, false);
          await s.inbox.until(() => s.inbox.on(topic).length === 2, 'two messages');
          assert.deepEqual(s.inbox.on(topic).map((m) => [m.payload, m.retain]), [['retained', false], ['plain', false]]);
        } finally {
          await close(pub, s.client);
        }
      });

      test('[v3.1.1 MQTT-3.8.4-3] re-subscribing sends the retained message again', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await publish(pub, topic, 'again', 1, true);
          assert.equal((await subscribeAndTakeRetained(s, topic, { qos: 1 })).length, 1);
          const again = await subscribeAndTakeRetained(s, topic, { qos: 1 });
          assert.deepEqual(again.map((m) => [m.payload, m.retain]), [['again', true]]);
        } finally {
          await close(pub, s.client);
        }
      });
    }

    if (version === 5) {
      test('[MQTT-3.3.1-9] Retain Handling 0 sends retained messages on every subscribe', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await publish(pub, topic, 'rh0', 1, true);
          for (let i = 0; i < 2; i++) {
            const got = await subscribeAndTakeRetained(s, topic, { qos: 1, rh: 0, properties: { subscriptionIdentifier: 40 + i } });
            assert.deepEqual(got.map((m) => [m.payload, m.retain, m.subscriptionIds]), [['rh0', true, [40 + i]]], `subscribe #${i + 1}`);
          }
        } finally {
          await close(pub, s.client);
        }
      });

      test('[MQTT-3.3.1-10] Retain Handling 1 sends retained messages only if the subscription did not exist', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await publish(pub, topic, 'rh1', 1, true);
          assert.deepEqual((await subscribeAndTakeRetained(s, topic, { qos: 1, rh: 1 })).map((m) => m.payload), ['rh1']);
          assert.deepEqual(await subscribeAndTakeRetained(s, topic, { qos: 1, rh: 1 }), [], 'resubscribe');
          assert.deepEqual(await subscribeAndTakeRetained(s, topic, { qos: 2, rh: 1 }), [], 'resubscribe with another QoS');
          await s.client.unsubscribeAsync(topic);
          assert.deepEqual((await subscribeAndTakeRetained(s, topic, { qos: 1, rh: 1 })).map((m) => m.payload), ['rh1'], 'after unsubscribe');
        } finally {
          await close(pub, s.client);
        }
      });

      test('[MQTT-3.3.1-11] Retain Handling 2 never sends retained messages, but live ones flow', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await publish(pub, topic, 'rh2', 1, true);
          assert.deepEqual(await subscribeAndTakeRetained(s, topic, { qos: 1, rh: 2 }), []);
          assert.deepEqual(await subscribeAndTakeRetained(s, `${topic}/#`, { qos: 1, rh: 2 }), []);
          await publish(pub, topic, 'live', 1, false);
          await s.inbox.next(topic);
          assert.deepEqual(s.inbox.on(topic).map((m) => m.payload), ['live']);
        } finally {
          await close(pub, s.client);
        }
      });

      test('[MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published keeps RETAIN on live messages only when set', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const rap = await subscriber(transport, version);
        const plain = await subscriber(transport, version);
        try {
          await rap.client.subscribeAsync(topic, { qos: 1, rap: true });
          await plain.client.subscribeAsync(topic, { qos: 1, rap: false });
          await publish(pub, topic, 'retained', 1, true);
          await publish(pub, topic, 'not retained', 1, false);
          for (const s of [rap, plain]) await s.inbox.until(() => s.inbox.on(topic).length === 2, 'two messages');
          assert.deepEqual(rap.inbox.on(topic).map((m) => [m.payload, m.retain]), [['retained', true], ['not retained', false]]);
          assert.deepEqual(plain.inbox.on(topic).map((m) => [m.payload, m.retain]), [['retained', false], ['not retained', false]]);
        } finally {
          await close(pub, rap.client, plain.client);
        }
      });

      test('[MQTT-3.3.1-12] [MQTT-3.3.1-9] messages sent because of a new subscription have RETAIN 1 even without Retain As Published', async () => {
        const topic = `r/${uniqueId()}`;
        const pub = await connect(broker, transport, version);
        const s = await subscriber(transport, version);
        try {
          await publish(pub, topic, 'on subscribe', 1, true);
          for (const rap of [false, true]) {
            const got = await subscribeAndTakeRetained(s, topic, { qos: 1, rap });
            assert.deepEqual(got.map((m) => m.retain), [true], `rap ${rap}`);
          }
        } finally {
          await close(pub, s.client);
        }
      });
    }
  });
}
