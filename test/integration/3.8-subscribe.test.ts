// SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK (MQTT 5 §3.8–§3.11) across [tcp, ws] × [3.1.1, 5.0]
// with real MQTT.js clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import type { IUnsubackPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, matrix, uniqueId } from '../helpers/clients.ts';
import { Inbox, serverDisconnect, subscribeRaw, unsubscribeRaw } from '../helpers/inbox.ts';

let broker: BrokerProcess;

/** MQTT.js resolves UNSUBSCRIBE with the UNSUBACK packet. */
async function unsubscribeAsync(c: MqttClient, filters: string[]): Promise<IUnsubackPacket> {
  return (await c.unsubscribeAsync(filters)) as IUnsubackPacket;
}
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

for (const { transport, version, name } of matrix) {
  describe(`subscribe and unsubscribe (${name})`, { timeout: 20_000 }, () => {
    const failure = version === 5 ? 0x8f : 0x80;

    test('[MQTT-3.8.4-1] [MQTT-3.9.3-1] SUBACK has one code per filter, in order, with the granted QoS', async () => {
      const p = `s/${uniqueId()}`;
      const c = await connect(broker, transport, version);
      try {
        const suback = await subscribeRaw(c, [
          { topic: `${p}/two`, qos: 2 },
          { topic: `${p}/zero`, qos: 0 },
          { topic: `${p}/bad/#/x`, qos: 1 },
          { topic: `${p}/one/+`, qos: 1 },
          { topic: `$share/g/${p}/shared`, qos: 1 },
        ]);
        assert.deepEqual(suback.granted, [2, 0, failure, 1, 1]);
        // the MQTT.js view of the same thing
        const granted = await c.subscribeAsync({ [`${p}/a`]: { qos: 1 }, [`${p}/b`]: { qos: 0 }, [`${p}/c`]: { qos: 2 } });
        assert.deepEqual(granted.map((g) => [g.topic, g.qos]), [[`${p}/a`, 1], [`${p}/b`, 0], [`${p}/c`, 2]]);
      } finally {
        await close(c);
      }
    });

    test('[MQTT-3.8.4-3] re-subscribing to the same filter replaces the subscription and its QoS', async () => {
      const topic = `s/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        for (const qos of [2, 0, 1] as const) {
          const granted = await sub.subscribeAsync(topic, { qos });
          assert.equal(granted[0]!.qos, qos);
          await pub.publishAsync(topic, `granted ${qos}`, { qos: 2 });
        }
        await sub.subscribeAsync(`${topic}/end`, { qos: 0 });
        await pub.publishAsync(`${topic}/end`, 'end', { qos: 0 });
        await inbox.next(`${topic}/end`);
        // exactly one copy per publish: the old subscription is gone, not kept alongside
        assert.deepEqual(inbox.on(topic).map((m) => [m.payload, m.qos]), [['granted 2', 2], ['granted 0', 0], ['granted 1', 1]]);
      } finally {
        await close(sub, pub);
      }
    });

    test('[MQTT-3.10.4-1] [MQTT-3.10.4-2] unsubscribe stops delivery for exactly that filter', async () => {
      const p = `s/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        await sub.subscribeAsync({ [`${p}/+`]: { qos: 1 }, [`${p}/a`]: { qos: 1 }, [`${p}/b`]: { qos: 1 } });
        await sub.unsubscribeAsync([`${p}/+`, `${p}/b`]);
        // "s/x/+" is removed, "s/x/a" is compared character by character and stays
        await pub.publishAsync(`${p}/b`, 'b', { qos: 1 });
        await pub.publishAsync(`${p}/c`, 'c', { qos: 1 });
        await pub.publishAsync(`${p}/a`, 'a', { qos: 1 });
        await inbox.next(`${p}/a`);
        assert.deepEqual(inbox.items.map((m) => m.payload), ['a']);
        await sub.unsubscribeAsync(`${p}/a`);
        await pub.publishAsync(`${p}/a`, 'after', { qos: 1 });
        await sub.subscribeAsync(`${p}/marker`, { qos: 1 });
        await pub.publishAsync(`${p}/marker`, 'marker', { qos: 1 });
        await inbox.next(`${p}/marker`);
        assert.deepEqual(inbox.items.map((m) => m.payload), ['a', 'marker']);
      } finally {
        await close(sub, pub);
      }
    });

    test('[MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK is sent even when no subscription matched', async () => {
      const p = `s/${uniqueId()}`;
      const c = await connect(broker, transport, version);
      try {
        await c.subscribeAsync(`${p}/x`, { qos: 0 });
        const unsuback = await unsubscribeRaw(c, [`${p}/x`, `${p}/never`, `${p}/+`]);
        assert.equal(unsuback.cmd, 'unsuback');
        if (version === 5) assert.deepEqual(unsuback.granted, [0x00, 0x11, 0x11]);
        // the connection is still in use
        const granted = await c.subscribeAsync(`${p}/y`, { qos: 1 });
        assert.equal(granted[0]!.qos, 1);
      } finally {
        await close(c);
      }
    });

    if (version === 5) {
      test('[MQTT-3.11.3-1] [MQTT-3.11.3-2] UNSUBACK reports 0x11 No subscription existed per filter, in order', async () => {
        const p = `s/${uniqueId()}`;
        const c = await connect(broker, transport, version);
        try {
          await c.subscribeAsync({ [`${p}/a`]: { qos: 1 }, [`$share/g/${p}/b`]: { qos: 1 } });
          const first = await unsubscribeAsync(c, [`${p}/none`, `${p}/a`, `$share/g/${p}/b`, `${p}/b`]);
          assert.deepEqual(first.granted, [0x11, 0x00, 0x00, 0x11]);
          const second = await unsubscribeAsync(c, [`${p}/a`, `$share/g/${p}/b`]);
          assert.deepEqual(second.granted, [0x11, 0x11]);
        } finally {
          await close(c);
        }
      });

      test('[MQTT-3.8.4-3] re-subscribing replaces the Subscription Identifier too', async () => {
        const topic = `s/${uniqueId()}`;
        const sub = await connect(broker, transport, version);
        const pub = await connect(broker, transport, version);
        try {
          const inbox = new Inbox(sub);
          await sub.subscribeAsync(topic, { qos: 1, properties: { subscriptionIdentifier: 5 } });
          await pub.publishAsync(topic, 'five', { qos: 1 });
          await sub.subscribeAsync(topic, { qos: 1, properties: { subscriptionIdentifier: 6 } });
          await pub.publishAsync(topic, 'six', { qos: 1 });
          await sub.subscribeAsync(topic, { qos: 1 });
          await pub.publishAsync(topic, 'none', { qos: 1 });
          await inbox.until(() => inbox.items.length === 3, 'three messages');
          assert.deepEqual(inbox.items.map((m) => [m.payload, m.subscriptionIds]), [['five', [5]], ['six', [6]], ['none', []]]);
        } finally {
          await close(sub, pub);
        }
      });

      test('[MQTT-3.8.3-3] No Local: a client does not receive its own publishes, but does receive others\'', async () => {
        const topic = `s/${uniqueId()}`;
        const self = await connect(broker, transport, version);
        const other = await connect(broker, transport, version);
        try {
          const selfInbox = new Inbox(self);
          const otherInbox = new Inbox(other);
          await self.subscribeAsync(topic, { qos: 1, nl: true });
          await other.subscribeAsync(topic, { qos: 1, nl: true });
          // a copy to `self` would be written before the PUBACK of its own publish
          await self.publishAsync(topic, 'from self', { qos: 1 });
          await other.publishAsync(topic, 'from other', { qos: 1 });
          await selfInbox.next(topic);
          await otherInbox.next(topic);
          assert.deepEqual(selfInbox.items.map((m) => m.payload), ['from other']);
          assert.deepEqual(otherInbox.items.map((m) => m.payload), ['from self']);
        } finally {
          await close(self, other);
        }
      });

      test('[MQTT-3.8.3-3] No Local applies per subscription: an overlapping one without it still delivers', async () => {
        const p = `s/${uniqueId()}`;
        const c = await connect(broker, transport, version);
        try {
          const inbox = new Inbox(c);
          await c.subscribeAsync(`${p}/x`, { qos: 1, nl: true, properties: { subscriptionIdentifier: 1 } });
          await c.subscribeAsync(`${p}/+`, { qos: 0, nl: false, properties: { subscriptionIdentifier: 2 } });
          await c.publishAsync(`${p}/x`, 'own', { qos: 1 });
          await inbox.next(`${p}/x`);
          assert.deepEqual(inbox.items.map((m) => [m.payload, m.qos, m.subscriptionIds]), [['own', 0, [2]]]);
        } finally {
          await close(c);
        }
      });

      test('[MQTT-3.8.2-1] a Subscription Identifier of 0 is a protocol error (DISCONNECT 0x82)', async () => {
        const c = await connect(broker, transport, version);
        try {
          const closed = serverDisconnect(c);
          subscribeRaw(c, [{ topic: `s/${uniqueId()}`, qos: 0 }], { subscriptionIdentifier: 0 }).catch(() => undefined);
          assert.equal(await closed, 0x82);
        } finally {
          await close(c);
        }
      });
    }

    test('[MQTT-3.8.3-3] without No Local a client receives its own publishes', async () => {
      const topic = `s/${uniqueId()}`;
      const c = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(c);
        await c.subscribeAsync(topic, { qos: 1 });
        await c.publishAsync(topic, 'echo', { qos: 1 });
        assert.equal((await inbox.next(topic)).payload, 'echo');
      } finally {
        await close(c);
      }
    });
  });
}
