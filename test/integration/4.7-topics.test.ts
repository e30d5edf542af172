// Topic wildcards, '$' topics, invalid filters, overlapping subscriptions and hub isolation
// (MQTT 5 §4.7, §3.3.4) across [tcp, ws] × [3.1.1, 5.0] with real MQTT.js clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { Inbox, subscribeRaw } from '../helpers/inbox.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

/** A client on a named hub's WebSocket path. */
function connectHub(hub: string, version: Version): Promise<MqttClient> {
  return mqtt.connectAsync(broker.wsUrl(hub), { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('hub') });
}

/** A client on the default hub over `transport` (TCP, or WebSocket `/mqtt`). */
function connectDefault(transport: Transport, version: Version): Promise<MqttClient> {
  return connect(broker, transport, version);
}

/**
 * Subscribe `filter`, publish `nonMatching` then `matching` in that order from one publisher and
 * check that exactly `matching` arrives. One connection delivers in order, so a wrongly matched
 * topic would arrive before the last matching one.
 */
async function expectMatches(transport: Transport, version: Version, filter: string, matching: string[], nonMatching: string[]): Promise<void> {
  const sub = await connect(broker, transport, version);
  const pub = await connect(broker, transport, version);
  try {
    const inbox = new Inbox(sub);
    const granted = await sub.subscribeAsync(filter, { qos: 1 });
    assert.equal(granted[0]!.qos, 1);
    for (const t of nonMatching) await pub.publishAsync(t, `no:${t}`, { qos: 1 });
    for (const t of matching) await pub.publishAsync(t, `yes:${t}`, { qos: 1 });
    await inbox.count(matching.length);
    assert.deepEqual(inbox.items.map((m) => m.topic), matching, `filter ${filter}`);
  } finally {
    await close(sub, pub);
  }
}

for (const { transport, version, name } of matrix) {
  describe(`topic filters (${name})`, { timeout: 20_000 }, () => {
    test('[MQTT-4.7.1-2] "+" matches exactly one level, including an empty one', async () => {
      const p = `w/${uniqueId()}`;
      await expectMatches(transport, version, `${p}/+`, [`${p}/a`, `${p}/`], [p, `${p}/a/b`, `${p}x/a`]);
    });

    test('[MQTT-4.7.1-2] "+" in the middle of a filter, matching an empty level', async () => {
      const p = `w/${uniqueId()}`;
      await expectMatches(transport, version, `${p}/+/c`, [`${p}/b/c`, `${p}//c`], [`${p}/b/d`, `${p}/b/c/d`, `${p}/c`, `${p}/b/C`]);
    });

    test('[MQTT-4.7.1-2] a leading "+" matches an empty first level', async () => {
      const q = uniqueId();
      await expectMatches(transport, version, `+/${q}`, [`x/${q}`, `/${q}`], [`x/y/${q}`, `${q}`, `x/${q}/z`]);
    });

    test('[MQTT-4.7.1-1] "#" matches the parent level and any number of child levels', async () => {
      const p = `w/${uniqueId()}`;
      await expectMatches(transport, version, `${p}/#`, [p, `${p}/a`, `${p}/a/b/c`, `${p}/`], [`${p}x`, `${p}x/a`, `w/${p}`]);
    });

    test('[MQTT-4.7.1-1] "a/+/#" matches "a/b" and deeper but not "a"', async () => {
      const p = `w/${uniqueId()}`;
      await expectMatches(transport, version, `${p}/+/#`, [`${p}/a`, `${p}/a/b`, `${p}//`], [p]);
    });

    test('[MQTT-4.7.3-4] topic matching is case sensitive and exact for filters without wildcards', async () => {
      const p = `w/${uniqueId()}`;
      await expectMatches(transport, version, `${p}/Ab`, [`${p}/Ab`], [`${p}/ab`, `${p}/AB`, `${p}/Ab/`, `${p}/Ab/c`, `${p} /Ab`]);
    });

    test('[MQTT-4.7.2-1] "#" does not match topics beginning with "$"', async () => {
      const id = uniqueId();
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        await sub.subscribeAsync('#', { qos: 1 });
        for (const t of [`$SYS/${id}`, `$foo${id}`, `$foo/${id}/x`]) await pub.publishAsync(t, 'dollar', { qos: 1 });
        const marker = `m/${id}`;
        await pub.publishAsync(marker, 'marker', { qos: 1 });
        await inbox.next(marker);
        assert.deepEqual(inbox.items.filter((m) => m.topic.startsWith('$')).map((m) => m.topic), []);
      } finally {
        await close(sub, pub);
      }
    });

    test('[MQTT-4.7.2-1] "+/x" and "+/#" do not match "$foo/x"', async () => {
      const id = uniqueId();
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        await sub.subscribeAsync({ [`+/${id}`]: { qos: 1 }, '+/#': { qos: 1 } });
        await pub.publishAsync(`$foo/${id}`, 'dollar', { qos: 1 });
        await pub.publishAsync(`$SYS/${id}`, 'dollar', { qos: 1 });
        await pub.publishAsync(`foo/${id}`, 'plain', { qos: 1 });
        await inbox.next(`foo/${id}`);
        assert.deepEqual(inbox.items.map((m) => m.topic), [`foo/${id}`]);
      } finally {
        await close(sub, pub);
      }
    });

    test('[MQTT-4.7.2-1] filters that start with "$" match "$" topics ("$foo/#", "$SYS/+")', async () => {
      const id = uniqueId();
      await expectMatches(transport, version, `$foo${id}/#`, [`$foo${id}`, `$foo${id}/a`, `$foo${id}/a/b`], [`foo${id}/a`, `$bar${id}/a`]);
      await expectMatches(transport, version, `$SYS/${id}/+`, [`$SYS/${id}/x`], [`$SYS/${id}`, `$SYS/${id}/x/y`]);
    });

    test('[MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] invalid filters get a SUBACK failure, valid ones in the same SUBSCRIBE are granted', async () => {
      const p = `w/${uniqueId()}`;
      const failure = version === 5 ? 0x8f : 0x80;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        // MQTT.js refuses to send these filters itself, so the SUBSCRIBE bypasses its check
        const suback = await subscribeRaw(sub, [
          { topic: `${p}/#/b`, qos: 0 },
          { topic: `${p}/a+`, qos: 1 },
          { topic: `${p}/ok`, qos: 1 },
          { topic: `${p}/+a/b`, qos: 0 },
          { topic: `${p}/b#`, qos: 0 },
          { topic: `${p}/##`, qos: 0 },
          { topic: `#/${p}`, qos: 0 },
        ]);
        assert.deepEqual(suback.granted, [failure, failure, 1, failure, failure, failure, failure]);
        // the connection stays usable and only the valid filter routes
        await pub.publishAsync(`${p}/ax`, 'not routed', { qos: 1 });
        await pub.publishAsync(`${p}/ok`, 'routed', { qos: 1 });
        await inbox.next(`${p}/ok`);
        assert.deepEqual(inbox.items.map((m) => m.topic), [`${p}/ok`]);
      } finally {
        await close(sub, pub);
      }
    });

    test('[MQTT-4.7.3-1] an empty topic filter gets a SUBACK failure', async () => {
      const sub = await connect(broker, transport, version);
      try {
        const suback = await subscribeRaw(sub, [{ topic: '', qos: 0 }, { topic: `w/${uniqueId()}`, qos: 2 }]);
        assert.deepEqual(suback.granted, [version === 5 ? 0x8f : 0x80, 2]);
      } finally {
        await close(sub);
      }
    });

    test('[MQTT-3.3.4-2] overlapping subscriptions deliver one copy at the highest granted QoS', async () => {
      const p = `w/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      try {
        const inbox = new Inbox(sub);
        await sub.subscribeAsync(`${p}/#`, { qos: 0 });
        await sub.subscribeAsync(`${p}/+`, { qos: 2 });
        await sub.subscribeAsync(`${p}/x`, { qos: 1 });
        await pub.publishAsync(`${p}/x`, 'q2', { qos: 2 });
        await pub.publishAsync(`${p}/x`, 'q1', { qos: 1 });
        // matched only by the QoS 0 "#" subscription, and sent after the copies above
        await pub.publishAsync(`${p}/m/n`, 'marker', { qos: 2 });
        await inbox.next(`${p}/m/n`);
        assert.deepEqual(inbox.items.map((m) => [m.topic, m.payload, m.qos]), [
          [`${p}/x`, 'q2', 2],
          [`${p}/x`, 'q1', 1],
          [`${p}/m/n`, 'marker', 0],
        ]);
      } finally {
        await close(sub, pub);
      }
    });

    if (version === 5) {
      test('[MQTT-3.3.4-3] [MQTT-3.3.4-4] the single copy carries every matching Subscription Identifier', async () => {
        const p = `w/${uniqueId()}`;
        const sub = await connect(broker, transport, version);
        const pub = await connect(broker, transport, version);
        try {
          const inbox = new Inbox(sub);
          await sub.subscribeAsync(`${p}/#`, { qos: 0, properties: { subscriptionIdentifier: 11 } });
          await sub.subscribeAsync(`${p}/+`, { qos: 1, properties: { subscriptionIdentifier: 268_435_455 } });
          await sub.subscribeAsync(`${p}/x`, { qos: 2, properties: { subscriptionIdentifier: 7 } });
          await sub.subscribeAsync(`+/${p.slice(2)}/x`, { qos: 0 }); // no identifier: adds none
          await pub.publishAsync(`${p}/x`, 'all', { qos: 2 });
          await pub.publishAsync(`${p}/y`, 'two', { qos: 2 });
          await pub.publishAsync(`${p}/m/n`, 'one', { qos: 2 });
          await inbox.next(`${p}/m/n`);
          assert.deepEqual(inbox.items.map((m) => [m.payload, m.qos, m.subscriptionIds]), [
            ['all', 2, [7, 11, 268_435_455]],
            ['two', 1, [11, 268_435_455]],
            ['one', 0, [11]],
          ]);
          // MQTT.js reports a single identifier as a number, several as an array
          assert.equal(inbox.items[2]!.packet.properties?.subscriptionIdentifier, 11);
        } finally {
          await close(sub, pub);
        }
      });
    }

    test('[Tern hubs] hubs are isolated: a client on hub "a" does not receive publishes from hub "b"', async () => {
      const topic = `h/${uniqueId()}`;
      const hubA = `a_${uniqueId().replace(/-/g, '_')}`; // hub names allow letters, digits and _`,.[]
      const hubB = `b_${uniqueId().replace(/-/g, '_')}`;
      const subA = await connectHub(hubA, version);
      const subB = await connectHub(hubB, version);
      const subDefault = await connectDefault(transport, version);
      const pubA = await connectHub(hubA, version);
      const pubB = await connectHub(hubB, version);
      try {
        const inboxA = new Inbox(subA);
        const inboxB = new Inbox(subB);
        const inboxDefault = new Inbox(subDefault);
        for (const c of [subA, subB, subDefault]) await c.subscribeAsync(topic, { qos: 1 });
        // QoS 1: routed to every target before the PUBACK
        await pubB.publishAsync(topic, 'from b', { qos: 1 });
        await inboxB.next(topic);
        await pubA.publishAsync(topic, 'from a', { qos: 1 });
        await inboxA.next(topic);
        // a copy from hub b would have been written to subA before "from a" was even published
        assert.deepEqual(inboxA.items.map((m) => m.payload), ['from a']);
        assert.deepEqual(inboxB.items.map((m) => m.payload), ['from b']);
        const pubDefault = await connectDefault(transport, version);
        try {
          await pubDefault.publishAsync(topic, 'from default', { qos: 1 });
          await inboxDefault.next(topic);
          assert.deepEqual(inboxDefault.items.map((m) => m.payload), ['from default']);
        } finally {
          await close(pubDefault);
        }
      } finally {
        await close(subA, subB, subDefault, pubA, pubB);
      }
    });

    test('[Tern hubs] hub names are case-insensitive paths to the same hub', async () => {
      const topic = `h/${uniqueId()}`;
      // TCP clients are always on the default hub ("default"): over TCP, reach it from the WebSocket
      // hub path in another case; over WebSocket, two cases of a new hub's name
      const hub = transport === 'tcp' ? 'default' : `Mixed_${uniqueId().replace(/-/g, '_')}`;
      const sub = transport === 'tcp' ? await connectDefault('tcp', version) : await connectHub(hub.toLowerCase(), version);
      const pub = await connectHub(transport === 'tcp' ? 'DeFaUlT' : hub.toUpperCase(), version);
      try {
        const inbox = new Inbox(sub);
        await sub.subscribeAsync(topic, { qos: 1 });
        await pub.publishAsync(topic, 'same hub', { qos: 1 });
        assert.equal((await inbox.next(topic)).payload, 'same hub');
      } finally {
        await close(sub, pub);
      }
    });

    test('[Tern hubs] TCP and WebSocket "/mqtt" clients share the default hub', async () => {
      const topic = `h/${uniqueId()}`;
      const other: Transport = transport === 'tcp' ? 'ws' : 'tcp';
      const sub = await connectDefault(transport, version);
      const peer = await connectDefault(other, version);
      try {
        const inbox = new Inbox(sub);
        const peerInbox = new Inbox(peer);
        await sub.subscribeAsync(topic, { qos: 1 });
        await peer.subscribeAsync(topic, { qos: 1 });
        await peer.publishAsync(topic, `from ${other}`, { qos: 1 });
        await sub.publishAsync(topic, `from ${transport}`, { qos: 1 });
        await inbox.until(() => inbox.items.length === 2, 'two messages');
        await peerInbox.until(() => peerInbox.items.length === 2, 'two messages');
        assert.deepEqual(inbox.items.map((m) => m.payload).sort(), [`from ${other}`, `from ${transport}`].sort());
        assert.deepEqual(peerInbox.items.map((m) => m.payload).sort(), [`from ${other}`, `from ${transport}`].sort());
      } finally {
        await close(sub, peer);
      }
    });
  });
}
