// Publish/subscribe routing in the engine, in-process (no sockets, no PostgreSQL): topic filter
// matching, $-topics, overlapping subscriptions, QoS downgrade, No Local, Retain As Published and
// the retained message rules on subscribe.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  connectWith, disconnectedWith, engine, publish, publishesReach, quiet, subscribe, text, versionName, VERSIONS, type Version,
} from './engine-steps.ts';

/** Subscribe one client to each filter (QoS 0), publish QoS 0 on each topic, return the topics it got. */
async function topicsMatched(version: Version, filters: string[], topics: string[]): Promise<string[]> {
  const e = await engine();
  const sub = e.client(version);
  await connectWith(sub, 'sub');
  for (const f of filters) await subscribe(sub, f, 0);
  const pub = e.client(5);
  await connectWith(pub, 'pub');
  for (const t of topics) await publish(pub, t, t, 0);
  await quiet(sub);
  const got = sub.publishes.map((p) => p.topic);
  await e.stop();
  return got;
}

/** A subscriber on `filter` at `qos` and a publisher, both connected. */
async function pair(version: Version, filter: string, qos: 0 | 1 | 2, subscriberOptions = {}): Promise<{ e: Awaited<ReturnType<typeof engine>>; sub: EngineClient; pub: EngineClient }> {
  const e = await engine();
  const sub = e.client(version);
  await connectWith(sub, 'sub');
  await subscribe(sub, filter, qos, subscriberOptions);
  const pub = e.client(version);
  await connectWith(pub, 'pub');
  return { e, sub, pub };
}

describe('topic filters', () => {
  test('§4.7 an exact filter matches its own topic name only, case-sensitively', async () => {
    assert.deepEqual(await topicsMatched(5, ['a/b'], ['a/b', 'a/c', 'a/b/c', 'a', 'A/b', 'a/b/']), ['a/b']);
  });

  test('§4.7.1.3 + matches exactly one level, an empty one included', async () => {
    const got = await topicsMatched(4, ['sport/+/player'], ['sport/tennis/player', 'sport/tennis/x/player', 'sport//player', 'sport/player']);
    assert.deepEqual(got, ['sport/tennis/player', 'sport//player']);
  });

  test('§4.7.1.2 # matches the parent level and every level below it', async () => {
    const got = await topicsMatched(5, ['sport/#'], ['sport', 'sport/tennis', 'sport/tennis/player', 'sports', 'other/sport']);
    assert.deepEqual(got, ['sport', 'sport/tennis', 'sport/tennis/player']);
  });

  test('[MQTT-3.3.2-3] the topic name delivered is the one published, not the filter', async () => {
    const { e, sub, pub } = await pair(5, 'x/+/z', 0);
    await publish(pub, 'x/y/z', 'p', 0);
    const [p] = await publishesReach(sub, 1);
    assert.equal(p!.topic, 'x/y/z');
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`[MQTT-4.7.2-1] wildcards at the first level do not match $-topics; $SYS/# does (${versionName(version)})`, async () => {
      const e = await engine();
      const wild = e.client(version);
      await connectWith(wild, 'wild');
      await subscribe(wild, '#', 0);
      await subscribe(wild, '+/info', 0);
      const sys = e.client(version);
      await connectWith(sys, 'sys');
      await subscribe(sys, '$SYS/#', 0);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, '$SYS/info', 'status', 0);
      await publish(pub, 'app/info', 'app', 0);
      await quiet(wild, sys);
      assert.deepEqual(wild.publishes.map((p) => p.topic), ['app/info'], 'a wildcard matched a $-topic (or overlapping filters sent two copies)');
      assert.deepEqual(sys.publishes.map((p) => p.topic), ['$SYS/info']);
      await e.stop();
    });
  }
});

describe('QoS of deliveries', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-3.8.4-8] a message is delivered at the lower of its QoS and the granted QoS (${versionName(version)})`, async () => {
      const e = await engine();
      const low = e.client(version);
      await connectWith(low, 'low');
      await subscribe(low, 'q/t', 1);
      const high = e.client(version);
      await connectWith(high, 'high');
      await subscribe(high, 'q/t', 2);
      const pub = e.client(version);
      await connectWith(pub, 'pub');
      await publish(pub, 'q/t', 'two', 2);
      await publish(pub, 'q/t', 'zero', 0);
      await publishesReach(low, 2);
      await publishesReach(high, 2);
      assert.deepEqual(low.publishes.map((p) => [text(p), p.qos]), [['two', 1], ['zero', 0]]);
      assert.deepEqual(high.publishes.map((p) => [text(p), p.qos]), [['two', 2], ['zero', 0]]);
      await e.stop();
    });

    test(`[MQTT-3.3.4-2] overlapping subscriptions of one session get one copy at the highest QoS (${versionName(version)})`, async () => {
      const e = await engine();
      const sub = e.client(version);
      await connectWith(sub, 'sub');
      await subscribe(sub, 'o/+', 0);
      await subscribe(sub, 'o/#', 2);
      await subscribe(sub, 'o/t', 1);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'o/t', 'once', 2);
      await quiet(sub);
      assert.deepEqual(sub.publishes.map((p) => [text(p), p.qos]), [['once', 2]]);
      await e.stop();
    });
  }

  test('[MQTT-3.8.4-3] a SUBSCRIBE to a filter already subscribed replaces it: the new QoS applies, one copy', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'again/t', 0);
    await subscribe(sub, 'again/t', 2);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'again/t', 'm', 2);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map((p) => [text(p), p.qos]), [['m', 2]]);
    await e.stop();
  });

  test('[MQTT-3.8.4-3] the same filter twice in one SUBSCRIBE: a code for each, the later options win', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    const from = sub.packets.length;
    const opts = { nl: false, rap: false, rh: 0 };
    sub.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'y/t', qos: 0, ...opts }, { topic: 'y/t', qos: 1, ...opts }] } as Packet);
    const ack = await sub.waitFor((p) => p.cmd === 'suback', 'SUBACK', from);
    assert.deepEqual((ack as { granted: number[] }).granted, [0, 1]);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'y/t', 'm', 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map((p) => p.qos), [1]);
    await e.stop();
  });

  test('[MQTT-3.3.4-3] the single copy carries the Subscription Identifier of every matching subscription', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'ids/+', 0, { id: 7 });
    await subscribe(sub, 'ids/#', 1, { id: 9 });
    await subscribe(sub, 'ids/none', 1); // no identifier: adds none
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'ids/x', 'm', 1);
    const [p] = await publishesReach(sub, 1);
    const ids = [p!.properties?.subscriptionIdentifier].flat().sort();
    assert.deepEqual(ids, [7, 9]);
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`[MQTT-3.2.2-9] with Maximum QoS 1 a QoS 2 subscription is granted QoS 1 (${versionName(version)})`, async () => {
      const e = await engine({ maximumQos: 1 });
      const sub = e.client(version);
      const connack = await connectWith(sub, 'sub');
      if (version === 5) assert.equal(connack.properties?.maximumQoS, 1, 'Maximum QoS not advertised');
      const ack = await subscribe(sub, 'm/t', 2);
      assert.deepEqual(ack.granted, [1]);
      await e.stop();
    });
  }

  test('[MQTT-3.2.2-11] with Maximum QoS 1 a QoS 2 PUBLISH from a 5.0 client gets DISCONNECT 0x9B', async () => {
    const e = await engine({ maximumQos: 1 });
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    pub.send({ cmd: 'publish', topic: 'm/t', payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false });
    assert.equal(await disconnectedWith(pub), 0x9b);
    await e.stop();
  });
});

describe('No Local and Retain As Published', () => {
  test('[MQTT-3.8.3-3] with No Local a client does not get its own messages; without it, it does', async () => {
    const e = await engine();
    const a = e.client(5);
    await connectWith(a, 'a');
    await subscribe(a, 'nl/t', 0, { nl: true });
    const b = e.client(5);
    await connectWith(b, 'b');
    await subscribe(b, 'nl/t', 0);
    await publish(a, 'nl/t', 'from-a', 0);
    await publish(b, 'nl/t', 'from-b', 0);
    await quiet(a, b);
    assert.deepEqual(a.publishes.map(text), ['from-b'], 'No Local delivered the publisher\'s own message');
    assert.deepEqual(b.publishes.map(text), ['from-a', 'from-b']);
    await subscribe(a, 'nl/t', 0); // replaces the subscription [MQTT-3.8.4-3], now without No Local
    await publish(a, 'nl/t', 'again', 0);
    await quiet(a);
    assert.deepEqual(a.publishes.map(text), ['from-b', 'again']);
    await e.stop();
  });

  test('[MQTT-3.8.3-3] [MQTT-3.3.4-2] No Local on one of two overlapping filters: the other still delivers one copy', async () => {
    const e = await engine();
    const a = e.client(5);
    await connectWith(a, 'a');
    await subscribe(a, 'ov/t', 0, { nl: true });
    await subscribe(a, 'ov/+', 1);
    await publish(a, 'ov/t', 'own', 1);
    await quiet(a);
    assert.deepEqual(a.publishes.map((p) => [text(p), p.qos]), [['own', 1]]);
    await e.stop();
  });

  test('[MQTT-3.3.1-12] [MQTT-3.3.1-13] live messages keep RETAIN only with Retain As Published', async () => {
    const e = await engine();
    const plain = e.client(5);
    await connectWith(plain, 'plain');
    await subscribe(plain, 'rap/t', 0);
    const rap = e.client(5);
    await connectWith(rap, 'rap');
    await subscribe(rap, 'rap/t', 0, { rap: true });
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'rap/t', 'kept', 0, { retain: true });
    await publish(pub, 'rap/t', 'live', 0);
    await quiet(plain, rap);
    assert.deepEqual(plain.publishes.map((p) => [text(p), p.retain]), [['kept', false], ['live', false]]);
    assert.deepEqual(rap.publishes.map((p) => [text(p), p.retain]), [['kept', true], ['live', false]]);
    await e.stop();
  });

  test('[v3.1.1 MQTT-3.3.1-9] 3.1.1: a live message is forwarded with RETAIN 0 however it was published', async () => {
    const { e, sub, pub } = await pair(4, 'r3/t', 1);
    await publish(pub, 'r3/t', 'x', 1, { retain: true });
    const [p] = await publishesReach(sub, 1);
    assert.equal(p!.retain, false);
    await e.stop();
  });
});

describe('retained messages on subscribe', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-3.3.1-9] a new subscription gets the matching retained messages with RETAIN 1 (${versionName(version)})`, async () => {
      const e = await engine();
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'ret/a', 'A', 1, { retain: true });
      await publish(pub, 'ret/b', 'B', 0, { retain: true });
      await publish(pub, 'other', 'X', 0, { retain: true });
      const sub = e.client(version);
      await connectWith(sub, 'sub');
      await subscribe(sub, 'ret/+', 1);
      await publishesReach(sub, 2);
      await quiet(sub);
      const got = sub.publishes.map((p) => [p.topic, text(p), p.retain, p.qos]).sort();
      assert.deepEqual(got, [['ret/a', 'A', true, 1], ['ret/b', 'B', true, 0]]);
      await e.stop();
    });
  }

  test('[MQTT-3.3.1-5] a retained PUBLISH replaces the one kept for its topic', async () => {
    const e = await engine();
    const pub = e.client(4);
    await connectWith(pub, 'pub');
    await publish(pub, 'rep/t', 'old', 0, { retain: true });
    await publish(pub, 'rep/t', 'new', 0, { retain: true });
    const sub = e.client(4);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'rep/t', 0);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['new']);
    await e.stop();
  });

  test('[MQTT-3.3.1-6] [MQTT-3.3.1-7] a zero-byte retained PUBLISH removes the retained message and is itself not kept', async () => {
    const { e, sub: live, pub } = await pair(5, 'del/t', 0);
    await publish(pub, 'del/t', 'kept', 0, { retain: true });
    await publish(pub, 'del/t', '', 0, { retain: true });
    await quiet(live);
    assert.deepEqual(live.publishes.map(text), ['kept', ''], 'the zero-byte message is forwarded to current subscribers');
    const late = e.client(5);
    await connectWith(late, 'late');
    await subscribe(late, 'del/t', 0);
    await quiet(late);
    assert.equal(late.publishes.length, 0, 'a retained message was sent after its removal');
    await e.stop();
  });

  test('[MQTT-3.3.1-8] a PUBLISH with RETAIN 0 neither stores nor replaces the retained message', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'keep/t', 'retained', 0, { retain: true });
    await publish(pub, 'keep/t', 'not-retained', 0);
    await publish(pub, 'keep/u', 'never', 0);
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'keep/#', 0);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['retained']);
    await e.stop();
  });

  test('[MQTT-3.3.1-10] Retain Handling 1 sends retained messages only if the subscription is new', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'rh1/t', 'r', 0, { retain: true });
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'rh1/t', 0, { rh: 1 });
    await publishesReach(sub, 1);
    await subscribe(sub, 'rh1/t', 0, { rh: 1 });
    await quiet(sub);
    assert.equal(sub.publishes.length, 1, 'retained sent again for an existing subscription');
    await e.stop();
  });

  test('[MQTT-3.3.1-11] Retain Handling 2 never sends retained messages', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'rh2/t', 'r', 0, { retain: true });
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'rh2/t', 0, { rh: 2 });
    await quiet(sub);
    assert.equal(sub.publishes.length, 0);
    await publish(pub, 'rh2/t', 'live', 0);
    await publishesReach(sub, 1, 'the live message');
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`[MQTT-3.8.4-3] Retain Handling 0: repeating a SUBSCRIBE sends the retained messages again (${versionName(version)})`, async () => {
      const e = await engine();
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'rh0/t', 'r', 0, { retain: true });
      const sub = e.client(version);
      await connectWith(sub, 'sub');
      await subscribe(sub, 'rh0/t', 0);
      await publishesReach(sub, 1);
      await subscribe(sub, 'rh0/t', 0);
      await publishesReach(sub, 2, 'the retained message again');
      assert.ok(sub.publishes.every((p) => p.retain && text(p) === 'r'));
      await e.stop();
    });
  }
});
