// Shared subscriptions in the engine, in-process: each message to one member of each group,
// granted QoS per member, redistribution when a member leaves, QoS 2 kept with its member, and the
// rules that differ from ordinary subscriptions (no retained messages, No Local refused).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  connectPersistent, connectWith, disconnectedWith, engine, publish, publishesReach, quiet, settle, subscribe, text,
  versionName, VERSIONS, type TestEngine, type Version,
} from './engine-steps.ts';

/** A connected member of `filter` at `qos`; `persistent` keeps its session, `window` is its Receive Maximum. */
async function member(e: TestEngine, id: string, filter: string, qos: 0 | 1 | 2, o: { version?: Version; persistent?: boolean; window?: number } = {}): Promise<EngineClient> {
  const c = e.client(o.version ?? 5);
  const fields = o.window !== undefined ? { properties: { receiveMaximum: o.window } } : {};
  if (o.persistent) await connectPersistent(c, id, 3600, fields);
  else await connectWith(c, id, fields);
  await subscribe(c, filter, qos);
  return c;
}

async function publisher(e: TestEngine): Promise<EngineClient> {
  const pub = e.client(5);
  await connectWith(pub, 'pub');
  return pub;
}

const payloads = (...cs: EngineClient[]): string[] => cs.flatMap((c) => c.publishes.map(text)).sort();
const range = (n: number, prefix = 'm'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`);

describe('distribution among members', () => {
  for (const version of VERSIONS) {
    test(`§4.8.2 each message goes to exactly one member of the group, and every member gets some (${versionName(version)})`, async () => {
      const e = await engine();
      const a = await member(e, 'a', '$share/g/s/t', 0, { version });
      const b = await member(e, 'b', '$share/g/s/t', 0, { version });
      const pub = await publisher(e);
      const all = range(10);
      for (const m of all) await publish(pub, 's/t', m, 0);
      await quiet(a, b);
      assert.deepEqual(payloads(a, b), all, 'a message was lost or duplicated within the group');
      assert.ok(a.publishes.length > 0 && b.publishes.length > 0, `one member got everything: ${a.publishes.length}/${b.publishes.length}`);
      await e.stop();
    });
  }

  test('every group gets its own copy, and so does an ordinary subscription to the same filter', async () => {
    const e = await engine();
    const g1a = await member(e, 'g1a', '$share/g1/multi/+', 1);
    const g1b = await member(e, 'g1b', '$share/g1/multi/+', 1);
    const g2 = await member(e, 'g2', '$share/g2/multi/+', 1);
    const plain = await member(e, 'plain', 'multi/+', 1);
    for (const c of [g1a, g1b, g2, plain]) c.autoAck = true;
    const pub = await publisher(e);
    const all = range(4);
    for (const m of all) await publish(pub, 'multi/x', m, 1);
    await quiet(g1a, g1b, g2, plain);
    assert.deepEqual(payloads(g1a, g1b), all);
    assert.deepEqual(payloads(g2), all);
    assert.deepEqual(payloads(plain), all);
    await e.stop();
  });

  test('[MQTT-4.8.2-3] each member gets the message at the QoS it was granted', async () => {
    const e = await engine();
    const low = await member(e, 'low', '$share/q/qos/t', 0);
    const high = await member(e, 'high', '$share/q/qos/t', 1);
    const pub = await publisher(e);
    for (const m of range(4)) await publish(pub, 'qos/t', m, 1);
    await quiet(low, high);
    assert.ok(low.publishes.length > 0 && high.publishes.length > 0);
    assert.ok(low.publishes.every((p) => p.qos === 0), 'above the QoS 0 member\'s grant');
    assert.ok(high.publishes.every((p) => p.qos === 1));
    await e.stop();
  });

  test('a member that is connected is chosen over one whose session is offline', async () => {
    const e = await engine();
    const away = await member(e, 'away', '$share/o/off/t', 1, { persistent: true });
    away.drop();
    await settle();
    const here = await member(e, 'here', '$share/o/off/t', 1);
    here.autoAck = true;
    const pub = await publisher(e);
    const all = range(4);
    for (const m of all) await publish(pub, 'off/t', m, 1);
    await quiet(here);
    assert.deepEqual(payloads(here), all);
    assert.equal((await e.store.load()).deliveries.filter((d) => d.clientId === 'away').length, 0, 'queued for the offline member');
    await e.stop();
  });

  test('with every member offline, a persistent member keeps the messages until it comes back', async () => {
    const e = await engine();
    const away = await member(e, 'only', '$share/k/keep/t', 1, { persistent: true });
    away.drop();
    await settle();
    const pub = await publisher(e);
    await publish(pub, 'keep/t', 'kept', 1);
    const back = e.client(5);
    assert.equal((await connectPersistent(back, 'only')).sessionPresent, true);
    assert.deepEqual((await publishesReach(back, 1)).map(text), ['kept']);
    await e.stop();
  });
});

describe('redistribution when a member leaves', () => {
  test('after UNSUBSCRIBE, the remaining member gets every message', async () => {
    const e = await engine();
    const a = await member(e, 'a', '$share/u/leave/t', 0);
    const b = await member(e, 'b', '$share/u/leave/t', 0);
    const from = a.packets.length;
    a.send({ cmd: 'unsubscribe', messageId: 50, unsubscriptions: ['$share/u/leave/t'] });
    await a.waitFor((p) => p.cmd === 'unsuback', 'UNSUBACK', from);
    const pub = await publisher(e);
    const all = range(6);
    for (const m of all) await publish(pub, 'leave/t', m, 0);
    await quiet(a, b);
    assert.equal(a.publishes.length, 0);
    assert.deepEqual(payloads(b), all);
    await e.stop();
  });

  for (const persistent of [true, false]) {
    test(`a member that drops hands its queued and in-flight QoS 1 messages to another member (${persistent ? 'persistent' : 'clean'} sessions)`, async () => {
      const e = await engine();
      const a = await member(e, 'a', '$share/r/move/t', 1, { persistent, window: 1 });
      const b = await member(e, 'b', '$share/r/move/t', 1, { persistent, window: 1 });
      const pub = await publisher(e);
      const all = range(6);
      for (const m of all) await publish(pub, 'move/t', m, 1);
      await publishesReach(a, 1);
      await publishesReach(b, 1);
      b.autoAck = true;
      b.send({ cmd: 'puback', messageId: b.publishes[0]!.messageId!, reasonCode: 0 } as Packet);
      await quiet(b);
      const aHad = new Set(all.filter((m) => !b.publishes.map(text).includes(m)));
      a.drop(); // A never acknowledged anything: all it held goes to B
      await b.waitFor(() => new Set(b.publishes.map(text)).size === all.length, 'every message at B');
      assert.ok(aHad.size >= 3, `A held ${aHad.size} of the messages`);
      assert.deepEqual([...new Set(b.publishes.map(text))].sort(), all);
      if (persistent) {
        await quiet(b);
        assert.equal((await e.store.load()).deliveries.length, 0, 'moved deliveries are still stored');
      }
      await e.stop();
    });
  }

  test('[MQTT-4.8.2-4] a QoS 2 message in flight stays with its member and is completed when it reconnects', async () => {
    const e = await engine();
    const a = await member(e, 'a', '$share/x/two/t', 2, { persistent: true });
    const b = await member(e, 'b', '$share/x/two/t', 2, { persistent: true });
    const pub = await publisher(e);
    await publish(pub, 'two/t', 'only-once', 2);
    await quiet(a, b);
    const holder = a.publishes.length > 0 ? a : b;
    const other = holder === a ? b : a;
    const [sent] = await publishesReach(holder, 1);
    holder.drop();
    await quiet(other);
    assert.equal(other.publishes.length, 0, 'the QoS 2 message was moved to another member');
    const back = e.client(5);
    await connectPersistent(back, holder === a ? 'a' : 'b');
    const [again] = await publishesReach(back, 1);
    assert.deepEqual([text(again!), again!.messageId, again!.dup], ['only-once', sent!.messageId, true]);
    await e.stop();
  });

  test('[MQTT-4.8.2-6] a PUBACK with a failure code discards the message: it is not sent to another member', async () => {
    const e = await engine();
    const a = await member(e, 'a', '$share/f/fail/t', 1);
    const b = await member(e, 'b', '$share/f/fail/t', 1);
    const pub = await publisher(e);
    await publish(pub, 'fail/t', 'refused', 1);
    await quiet(a, b);
    const holder = a.publishes.length > 0 ? a : b;
    const other = holder === a ? b : a;
    holder.send({ cmd: 'puback', messageId: holder.publishes[0]!.messageId!, reasonCode: 0x80 } as Packet);
    holder.drop();
    await quiet(other);
    assert.equal(other.publishes.length, 0);
    await e.stop();
  });
});

describe('rules particular to shared subscriptions', () => {
  test('§4.8.2 a shared subscription gets no retained messages on subscribe', async () => {
    const e = await engine();
    const pub = await publisher(e);
    await publish(pub, 'ret/t', 'retained', 0, { retain: true });
    const m = await member(e, 'm', '$share/g/ret/t', 0);
    await quiet(m);
    assert.equal(m.publishes.length, 0);
    await e.stop();
  });

  test('[MQTT-4.7.2-1] shared filters starting with a wildcard do not match $-topics either', async () => {
    const e = await engine();
    const m = await member(e, 'm', '$share/g/#', 0);
    await subscribe(m, '$share/h/+/x', 0);
    const pub = await publisher(e);
    await publish(pub, '$SYS/x', 'sys', 0);
    await quiet(m);
    assert.equal(m.publishes.length, 0);
    await e.stop();
  });

  test('[MQTT-3.3.4-3] a shared subscription\'s Subscription Identifier comes with the message', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectWith(c, 'c');
    await subscribe(c, '$share/g/sid/t', 1, { id: 5 });
    const pub = await publisher(e);
    await publish(pub, 'sid/t', 'm', 1);
    const [p] = await publishesReach(c, 1);
    assert.equal(p!.properties?.subscriptionIdentifier, 5);
    await e.stop();
  });

  test('[MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectWith(c, 'nl');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/nl/t', qos: 0, nl: true, rap: false, rh: 0 }] } as Packet);
    assert.equal(await disconnectedWith(c), 0x82);
    await e.stop();
  });

  test('Shared Subscription Available 0: CONNACK says so and SUBACK refuses with 0x9E', async () => {
    const e = await engine({ sharedSubscriptionAvailable: false });
    const c = e.client(5);
    const connack = await connectWith(c, 'off');
    assert.equal(connack.properties?.sharedSubscriptionAvailable, false);
    assert.deepEqual((await subscribe(c, '$share/g/t', 0)).granted, [0x9e]);
    await e.stop();
  });
});
