// Shared subscriptions `$share/{group}/{filter}` (MQTT 5 §4.8.2; Tern accepts them from 3.1.1
// clients too) across [tcp, ws] × [3.1.1, 5.0] with real MQTT.js clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { IConnackPacket } from 'mqtt-packet';
import type { Duplex } from 'node:stream';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { Inbox, serverDisconnect, subscribeRaw, untilAll } from '../helpers/inbox.ts';

// A small in-flight window, so that a member's deliveries are partly in flight, partly queued.
const MAX_INFLIGHT = 5;

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--max-inflight', String(MAX_INFLIGHT)]); });
after(async () => { await broker.stop(); });

interface Member {
  client: MqttClient;
  inbox: Inbox;
}

async function member(transport: Transport, version: Version, opts: IClientOptions = {}): Promise<Member> {
  const client = await connect(broker, transport, version, opts);
  return { client, inbox: new Inbox(client) };
}

/** Payloads `prefix0` … `prefix{n-1}`. */
function payloads(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

async function publishAll(pub: MqttClient, topic: string, list: string[], qos: 0 | 1 | 2): Promise<void> {
  await Promise.all(list.map((p) => pub.publishAsync(topic, p, { qos })));
}

/** Cut the connection without DISCONNECT, so that the broker publishes the client's will. */
function drop(client: MqttClient): void {
  (client.stream as unknown as Duplex).destroy();
}

/**
 * How a member withholds acknowledgements. 'handler': its message handler never finishes, so
 * MQTT.js sends no PUBACK (QoS 1) or no PUBCOMP (QoS 2, after PUBREC). 'no-ack' (5.0 only, MQTT.js
 * `customHandleAcks`): no PUBACK / PUBREC at all. Either way MQTT.js then stops handling further
 * packets, so `seen` holds only the first message while the rest stay unacknowledged too.
 */
type Stuck = 'handler' | 'no-ack';

async function stuckMember(
  transport: Transport, version: Version, will: string, how: Stuck, opts: IClientOptions = {},
): Promise<{ client: MqttClient; seen: string[]; first: Promise<void> }> {
  const seen: string[] = [];
  let firstSeen!: () => void;
  const first = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the stuck member received nothing')), 5000);
    firstSeen = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  const record = (payload: Buffer | string): void => {
    seen.push(payload.toString());
    firstSeen();
  };
  const client = await connect(broker, transport, version, {
    will: { topic: will, payload: Buffer.from('gone'), qos: 1, retain: false },
    ...opts,
    ...(how === 'no-ack' ? { customHandleAcks: (_topic: string, message: Buffer) => record(message) } : {}),
  });
  if (how === 'handler') client.handleMessage = (packet) => record(packet.payload);
  return { client, seen, first };
}

/** Resolve once `done()` holds, checking after every packet `client` receives. */
function untilPacket(client: MqttClient, done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!done()) return;
      clearTimeout(timer);
      client.off('packetreceive', check);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('packetreceive', check);
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    client.on('packetreceive', check);
    check();
  });
}

const sorted = (list: string[]): string[] => [...list].sort();

for (const { transport, version, name } of matrix) {
  describe(`shared subscriptions (${name})`, { timeout: 20_000 }, () => {
    for (const qos of [0, 1] as const) {
      test(`[MQTT-4.8.2-3] QoS ${qos}: each message goes to exactly one member of the group, none is lost`, async () => {
        const p = `sh/${uniqueId()}`;
        const members = await Promise.all([1, 2, 3].map(() => member(transport, version)));
        const pub = await connect(broker, transport, version);
        try {
          for (const m of members) {
            await m.client.subscribeAsync(`$share/g/${p}/+`, { qos });
            await m.client.subscribeAsync(`${p}/end/x`, { qos });
          }
          const sent = payloads('m', 60);
          for (const s of sent) await pub.publishAsync(`${p}/data`, s, { qos });
          // "end/x" is not matched by "+" (one level); every member gets it, after its share
          await pub.publishAsync(`${p}/end/x`, 'end', { qos });
          for (const m of members) await m.inbox.next(`${p}/end/x`);
          const shares = members.map((m) => m.inbox.on(`${p}/data`).map((r) => r.payload));
          const all = shares.flat();
          assert.equal(all.length, 60, `counts ${shares.map((s) => s.length).join('+')}`);
          assert.deepEqual(sorted(all), sorted(sent));
          for (const share of shares) assert.ok(share.length > 0, `every member gets some: ${shares.map((s) => s.length).join('+')}`);
          for (const m of members) for (const r of m.inbox.on(`${p}/data`)) assert.equal(r.qos, qos);
        } finally {
          await close(pub, ...members.map((m) => m.client));
        }
      });
    }

    test('[MQTT-4.8.2-3] each group gets every message once, and a normal subscriber gets all of them', async () => {
      const p = `sh/${uniqueId()}`;
      const g1 = await Promise.all([1, 2].map(() => member(transport, version)));
      const g2 = await Promise.all([1, 2, 3].map(() => member(transport, version)));
      const plain = await member(transport, version);
      const pub = await connect(broker, transport, version);
      try {
        for (const m of g1) await m.client.subscribeAsync(`$share/one/${p}/#`, { qos: 1 });
        for (const m of g2) await m.client.subscribeAsync(`$share/two/${p}/+`, { qos: 1 });
        await plain.client.subscribeAsync(`${p}/+`, { qos: 1 });
        const sent = payloads('m', 30);
        await publishAll(pub, `${p}/x`, sent, 1);
        const total = (group: Member[]): string[] => group.flatMap((m) => m.inbox.on(`${p}/x`).map((r) => r.payload));
        await plain.inbox.until(() => plain.inbox.items.length === 30, 'all messages on the plain subscriber');
        for (const group of [g1, g2]) {
          await untilAll(group.map((m) => m.inbox), () => total(group).length >= 30, 'every message in the group');
          assert.deepEqual(sorted(total(group)), sorted(sent));
        }
        assert.deepEqual(plain.inbox.items.map((r) => r.payload), sent);
      } finally {
        await close(pub, plain.client, ...g1.map((m) => m.client), ...g2.map((m) => m.client));
      }
    });

    test('[MQTT-4.8.2-3] a member receives at its own granted QoS', async () => {
      const topic = `sh/${uniqueId()}`;
      const low = await member(transport, version);
      const high = await member(transport, version);
      const pub = await connect(broker, transport, version);
      try {
        await low.client.subscribeAsync(`$share/g/${topic}`, { qos: 0 });
        await high.client.subscribeAsync(`$share/g/${topic}`, { qos: 2 });
        await publishAll(pub, topic, payloads('m', 10), 2);
        const got = (): number => low.inbox.items.length + high.inbox.items.length;
        await untilAll([low.inbox, high.inbox], () => got() === 10, 'ten messages');
        assert.ok(low.inbox.items.length > 0 && high.inbox.items.length > 0);
        assert.ok(low.inbox.items.every((r) => r.qos === 0));
        assert.ok(high.inbox.items.every((r) => r.qos === 2));
      } finally {
        await close(pub, low.client, high.client);
      }
    });

    test('[MQTT-4.8.2] a client with a shared and a normal subscription gets a copy for each', async () => {
      const topic = `sh/${uniqueId()}`;
      const c = await member(transport, version);
      const pub = await connect(broker, transport, version);
      try {
        await c.client.subscribeAsync({ [`$share/g/${topic}`]: { qos: 1 }, [topic]: { qos: 1 } });
        await pub.publishAsync(topic, 'twice', { qos: 1 });
        await c.inbox.until(() => c.inbox.items.length === 2, 'two copies');
        assert.deepEqual(c.inbox.items.map((r) => r.payload), ['twice', 'twice']);
      } finally {
        await close(pub, c.client);
      }
    });

    test('[MQTT-4.8.2] no retained messages are sent on subscribing to a shared subscription', async () => {
      const topic = `sh/${uniqueId()}`;
      const marker = `$marker/${uniqueId()}`;
      const c = await member(transport, version);
      try {
        await c.client.publishAsync(topic, 'retained', { qos: 1, retain: true });
        await c.client.publishAsync(marker, 'marker', { qos: 1, retain: true });
        await c.client.subscribeAsync(`$share/g/${topic}`, { qos: 1 });
        await c.client.subscribeAsync(marker, { qos: 1 });
        await c.inbox.next(marker);
        assert.deepEqual(c.inbox.items.map((r) => r.topic), [marker]);
      } finally {
        await c.client.publishAsync(topic, '', { qos: 1, retain: true }).catch(() => undefined);
        await close(c.client);
      }
    });

    test('[MQTT-4.8.2] when a member disconnects, later messages go to the remaining members', async () => {
      const p = `sh/${uniqueId()}`;
      const a = await member(transport, version);
      const b = await member(transport, version);
      const pub = await connect(broker, transport, version);
      try {
        for (const m of [a, b]) await m.client.subscribeAsync(`$share/g/${p}`, { qos: 1 });
        const before = payloads('before', 10);
        await publishAll(pub, p, before, 1);
        await untilAll([a.inbox, b.inbox], () => a.inbox.items.length + b.inbox.items.length >= 10, 'the first ten');
        assert.ok(a.inbox.items.length > 0, 'a got some before leaving');
        await a.client.endAsync();
        const afterLeaving = payloads('after', 10);
        await publishAll(pub, p, afterLeaving, 1);
        const bAfter = (): string[] => b.inbox.items.map((r) => r.payload).filter((s) => s.startsWith('after'));
        await b.inbox.until(() => new Set(bAfter()).size === 10, 'all later messages on b');
        assert.deepEqual(sorted(bAfter()), sorted(afterLeaving));
      } finally {
        await close(pub, a.client, b.client);
      }
    });

    test('[MQTT-4.8.2] when a member unsubscribes, the group keeps delivering to the others', async () => {
      const p = `sh/${uniqueId()}`;
      const a = await member(transport, version);
      const b = await member(transport, version);
      const pub = await connect(broker, transport, version);
      try {
        for (const m of [a, b]) await m.client.subscribeAsync(`$share/g/${p}`, { qos: 1 });
        await a.client.unsubscribeAsync(`$share/g/${p}`);
        await a.client.subscribeAsync(`${p}/end`, { qos: 1 });
        const sent = payloads('m', 10);
        await publishAll(pub, p, sent, 1);
        await pub.publishAsync(`${p}/end`, 'end', { qos: 1 });
        await b.inbox.until(() => b.inbox.items.length === 10, 'ten on b');
        await a.inbox.next(`${p}/end`);
        assert.deepEqual(sorted(b.inbox.items.map((r) => r.payload)), sorted(sent));
        assert.deepEqual(a.inbox.items.map((r) => r.topic), [`${p}/end`]);
      } finally {
        await close(pub, a.client, b.client);
      }
    });

    for (const how of (version === 5 ? ['handler', 'no-ack'] : ['handler']) as Stuck[]) {
      test(`[MQTT-4.8.2] QoS 1 messages in flight or queued to a member that is lost go to another member (${how})`, async () => {
        const p = `sh/${uniqueId()}`;
        const will = `${p}/will`;
        const stuck = await stuckMember(transport, version, will, how);
        const b = await member(transport, version);
        const pub = await connect(broker, transport, version);
        try {
          await stuck.client.subscribeAsync(`$share/g/${p}/data`, { qos: 1 });
          const sent = payloads('m', 12);
          // only the stuck member is in the group: MAX_INFLIGHT in flight, the rest queued
          await publishAll(pub, `${p}/data`, sent, 1);
          await stuck.first;
          await b.client.subscribeAsync({ [`$share/g/${p}/data`]: { qos: 1 }, [will]: { qos: 1 } });
          // while the stuck member's window is full, new messages go to the member with room
          const late = payloads('late', 5);
          await publishAll(pub, `${p}/data`, late, 1);
          await b.inbox.until(() => b.inbox.on(`${p}/data`).length === late.length, 'the late messages on b');
          drop(stuck.client);
          // the broker hands the deliveries over before it publishes the will
          await b.inbox.next(will);
          const moved = b.inbox.on(`${p}/data`).map((r) => r.payload);
          assert.deepEqual(sorted(moved), sorted([...sent, ...late]));
          assert.deepEqual(stuck.seen, ['m0']);
        } finally {
          await close(pub, stuck.client, b.client);
        }
      });

      const phase = how === 'handler' ? 'acknowledged with PUBREC' : 'not acknowledged';
      test(`[MQTT-4.8.2-5] QoS 2 messages in flight (${phase}) to a lost member whose session ends are not sent to another member`, async () => {
        const p = `sh/${uniqueId()}`;
        const will = `${p}/will`;
        const stuck = await stuckMember(transport, version, will, how);
        const b = await member(transport, version);
        const pub = await connect(broker, transport, version);
        try {
          await stuck.client.subscribeAsync(`$share/g/${p}/data`, { qos: 2 });
          const sent = payloads('m', 12);
          await publishAll(pub, `${p}/data`, sent, 2);
          await stuck.first;
          await b.client.subscribeAsync({ [`$share/g/${p}/data`]: { qos: 2 }, [will]: { qos: 1 } });
          drop(stuck.client);
          await b.inbox.next(will);
          const moved = b.inbox.on(`${p}/data`).map((r) => r.payload);
          // the first MAX_INFLIGHT were sent to the lost member; only the never-sent rest may move
          const inFlight = sent.slice(0, MAX_INFLIGHT);
          assert.deepEqual(moved.filter((m) => inFlight.includes(m)), []);
          assert.deepEqual(sorted(moved), sorted(sent.slice(MAX_INFLIGHT)));
        } finally {
          await close(pub, stuck.client, b.client);
        }
      });

      test(`[MQTT-4.8.2-4] QoS 2 messages in flight (${phase}) to a member are completed with it when it reconnects`, async () => {
        const p = `sh/${uniqueId()}`;
        const will = `${p}/will`;
        const clientId = uniqueId('persistent');
        const persistent: IClientOptions = { clientId, clean: false, ...(version === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) };
        const stuck = await stuckMember(transport, version, will, how, persistent);
        const b = await member(transport, version);
        const pub = await connect(broker, transport, version);
        let again: Member | undefined;
        try {
          await stuck.client.subscribeAsync(`$share/g/${p}/data`, { qos: 2 });
          const sent = payloads('m', 12);
          await publishAll(pub, `${p}/data`, sent, 2);
          await stuck.first;
          await b.client.subscribeAsync({ [`$share/g/${p}/data`]: { qos: 2 }, [will]: { qos: 1 } });
          drop(stuck.client);
          await b.inbox.next(will);
          const inFlight = sent.slice(0, MAX_INFLIGHT);
          assert.deepEqual(b.inbox.on(`${p}/data`).map((r) => r.payload).filter((m) => inFlight.includes(m)), []);
          // reconnect: PUBLISH again (DUP) if no PUBREC was sent, else PUBREL
          // listen before CONNACK: the broker resends right after it
          const reconnected = mqtt.connect(transport === 'tcp' ? broker.mqttUrl : broker.wsUrl(), {
            protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, ...persistent,
          });
          const pubrels: number[] = [];
          reconnected.on('packetreceive', (pk) => { if (pk.cmd === 'pubrel') pubrels.push(pk.messageId!); });
          again = { client: reconnected, inbox: new Inbox(reconnected) };
          const inbox = again.inbox;
          const connack = await new Promise<IConnackPacket>((resolve, reject) => {
            reconnected.once('connect', resolve);
            reconnected.once('error', reject);
          });
          assert.equal(connack.sessionPresent, true);
          // each in-flight message comes back as a PUBLISH with DUP (no PUBREC had been sent) or
          // as a PUBREL (PUBREC had been sent); none of them was given to the other member
          await untilPacket(reconnected, () => inbox.items.length + pubrels.length >= MAX_INFLIGHT, 'the in-flight messages again');
          assert.equal(inbox.items.length + pubrels.length, MAX_INFLIGHT);
          const resent = inbox.items.map((r) => r.payload);
          assert.equal(new Set(resent).size, resent.length);
          assert.ok(resent.every((m) => inFlight.includes(m)), `resent ${resent.join()}`);
          assert.ok(inbox.items.every((r) => r.packet.dup && r.qos === 2));
          if (how === 'no-ack') assert.equal(pubrels.length, 0);
          else assert.ok(pubrels.length > 0);
          await reconnected.unsubscribeAsync(`$share/g/${p}/data`);
        } finally {
          await close(pub, stuck.client, b.client, ...(again ? [again.client] : []));
        }
      });
    }

    test('[MQTT-4.8.2-2] malformed shared filters get a SUBACK failure', async () => {
      const p = `sh/${uniqueId()}`;
      const failure = version === 5 ? 0x8f : 0x80;
      const c = await connect(broker, transport, version);
      try {
        // MQTT.js refuses some of these itself, so the SUBSCRIBE bypasses its check
        const suback = await subscribeRaw(c, [
          { topic: '$share/g', qos: 0 },
          { topic: `$share//${p}`, qos: 0 },
          { topic: '$share/g/', qos: 0 },
          { topic: `$share/g/${p}`, qos: 1 },
          { topic: `$share/g+/${p}`, qos: 0 },
          { topic: `$share/g#/${p}`, qos: 0 },
          { topic: `$share/g/${p}/#/x`, qos: 0 },
          { topic: '$share/', qos: 0 },
        ]);
        assert.deepEqual(suback.granted, [failure, failure, failure, 1, failure, failure, failure, failure]);
      } finally {
        await close(c);
      }
    });

    if (version === 5) {
      test('[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error (DISCONNECT 0x82)', async () => {
        const c = await connect(broker, transport, version);
        try {
          const closed = serverDisconnect(c);
          c.subscribeAsync(`$share/g/sh/${uniqueId()}`, { qos: 1, nl: true }).catch(() => undefined);
          assert.equal(await closed, 0x82);
        } finally {
          await close(c);
        }
      });

      test('[MQTT-4.8.2-6] a message a member rejects with PUBACK 0x80 is not sent to another member', async () => {
        const p = `sh/${uniqueId()}`;
        const will = `${p}/will`;
        let rejected = 0;
        const rejecting = await member(transport, version, {
          will: { topic: will, payload: Buffer.from('gone'), qos: 1, retain: false },
          customHandleAcks: (_topic, _message, _packet, done) => {
            rejected++;
            done(0x80);
          },
        });
        const b = await member(transport, version);
        const pub = await connect(broker, transport, version);
        try {
          await rejecting.client.subscribeAsync(`$share/g/${p}`, { qos: 1 });
          await pub.publishAsync(p, 'rejected', { qos: 1 });
          await rejecting.inbox.next(p);
          await b.client.subscribeAsync({ [`$share/g/${p}`]: { qos: 1 }, [will]: { qos: 1 } });
          // PUBACK 0x80 then a lost connection: nothing is left to hand over
          await rejecting.client.publishAsync(`${p}/sync`, 'sync', { qos: 1 });
          drop(rejecting.client);
          await b.inbox.next(will);
          assert.equal(rejected, 1);
          assert.deepEqual(b.inbox.items.map((r) => r.topic), [will]);
        } finally {
          await close(pub, rejecting.client, b.client);
        }
      });

      test('[MQTT-3.3.1-12] [MQTT-3.3.1-13] a delivery handed to another member follows that member\'s Retain As Published', async () => {
        const p = `sh/${uniqueId()}`;
        const will = `${p}/will`;
        for (const [stuckRap, otherRap] of [[true, false], [false, true]] as const) {
          const topic = `${p}/${stuckRap}`;
          const stuck = await stuckMember(transport, version, will, 'handler');
          const b = await member(transport, version);
          const pub = await connect(broker, transport, version);
          try {
            await stuck.client.subscribeAsync(`$share/g/${topic}`, { qos: 1, rap: stuckRap });
            await pub.publishAsync(topic, 'retained', { qos: 1, retain: true });
            await pub.publishAsync(topic, 'plain', { qos: 1, retain: false });
            await stuck.first;
            await b.client.subscribeAsync({ [`$share/g/${topic}`]: { qos: 1, rap: otherRap }, [will]: { qos: 1 } });
            drop(stuck.client);
            await b.inbox.next(will);
            assert.deepEqual(b.inbox.on(topic).map((r) => [r.payload, r.retain]), [['retained', otherRap], ['plain', false]], `rap ${stuckRap} → ${otherRap}`);
          } finally {
            await pub.publishAsync(topic, '', { qos: 1, retain: true }).catch(() => undefined);
            await close(pub, stuck.client, b.client);
          }
        }
      });

      test('[MQTT-3.3.4-3] a member receives its own Subscription Identifier', async () => {
        const topic = `sh/${uniqueId()}`;
        const a = await member(transport, version);
        const b = await member(transport, version);
        const pub = await connect(broker, transport, version);
        try {
          await a.client.subscribeAsync(`$share/g/${topic}`, { qos: 1, properties: { subscriptionIdentifier: 101 } });
          await b.client.subscribeAsync(`$share/g/${topic}`, { qos: 1, properties: { subscriptionIdentifier: 202 } });
          await publishAll(pub, topic, payloads('m', 10), 1);
          await untilAll([a.inbox, b.inbox], () => a.inbox.items.length + b.inbox.items.length === 10, 'ten messages');
          // Round-robin gives each member some of the ten: an empty inbox would check no identifier at all
          assert.ok(a.inbox.items.length > 0 && b.inbox.items.length > 0, `both members received (${a.inbox.items.length}, ${b.inbox.items.length})`);
          assert.deepEqual(a.inbox.items.map((r) => r.subscriptionIds), a.inbox.items.map(() => [101]));
          assert.deepEqual(b.inbox.items.map((r) => r.subscriptionIds), b.inbox.items.map(() => [202]));
          assert.deepEqual([...a.inbox.items, ...b.inbox.items].map((r) => r.payload).sort(), payloads('m', 10).sort());
        } finally {
          await close(pub, a.client, b.client);
        }
      });
    }
  });
}
