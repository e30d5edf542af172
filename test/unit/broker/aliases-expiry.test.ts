// Topic aliases in both directions and Message Expiry Interval, in-process with a fake clock: an
// alias maps a topic for one connection only, within the advertised maximum; a message expires
// while it waits and is forwarded with what is left of its interval.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  acknowledge, connectPersistent, connectWith, disconnectedWith, engine, fixture, publish, publishesReach, quiet, settle,
  subscribe, text, type TestEngine, type Version,
} from './engine-steps.ts';

async function watcher(e: TestEngine, filter: string, version: Version = 5, qos: 0 | 1 | 2 = 2): Promise<EngineClient> {
  const w = e.client(version);
  await connectWith(w, `watch-${version}`);
  await subscribe(w, filter, qos);
  return w;
}

describe('topic aliases from the client', () => {
  test('[MQTT-3.3.2-12] an alias set with a topic name stands for it afterwards (fixture row with an empty topic name)', async () => {
    const e = await engine();
    const w = await watcher(e, 'al/#');
    const pub = e.client(5);
    const connack = await connectWith(pub, 'pub');
    assert.equal(connack.properties?.topicAliasMaximum, 64, 'Topic Alias Maximum not advertised');
    await publish(pub, 'al/t', 'sets', 0, { properties: { topicAlias: 1 } });
    const from = pub.packets.length;
    pub.sendBytes(fixture('PUBLISH 5.0 QoS 2 with topic alias and empty topic name').wire); // alias 1, packet id 5, payload zz
    await pub.waitFor((p) => p.cmd === 'pubrec' && p.messageId === 5, 'PUBREC', from);
    await publishesReach(w, 2);
    assert.deepEqual(w.publishes.map((p) => [p.topic, text(p)]), [['al/t', 'sets'], ['al/t', 'zz']]);
    await e.stop();
  });

  test('§3.3.2.3.4 an alias sent again with another topic name is mapped to the new one', async () => {
    const e = await engine();
    const w = await watcher(e, 'remap/#');
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'remap/a', '1', 0, { properties: { topicAlias: 3 } });
    await publish(pub, 'remap/b', '2', 0, { properties: { topicAlias: 3 } });
    await publish(pub, '', '3', 0, { properties: { topicAlias: 3 } });
    await publishesReach(w, 3);
    assert.deepEqual(w.publishes.map((p) => p.topic), ['remap/a', 'remap/b', 'remap/b']);
    await e.stop();
  });

  test('§3.3.2.3.4 an empty topic name with an alias never set is a Protocol Error (fixture row)', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    pub.sendBytes(fixture('PUBLISH 5.0 QoS 2 with topic alias and empty topic name').wire);
    assert.equal(await disconnectedWith(pub), 0x82);
    await e.stop();
  });

  // Regression: it was answered 0x90 Topic Name invalid (the name was checked before any alias rule)
  test('§3.3.2.3.4 an empty topic name without a Topic Alias is a Protocol Error (0x82)', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    pub.sendBytes(Buffer.from('3004000000' + '78', 'hex')); // PUBLISH QoS 0, topic name '', no properties, payload 'x'
    assert.equal(await disconnectedWith(pub), 0x82);
    await e.stop();
  });

  for (const [alias, rule] of [[0, '[MQTT-3.3.2-8] alias 0'], [65, '[MQTT-3.3.2-9] an alias above Topic Alias Maximum (64)']] as const) {
    test(`${rule} gets DISCONNECT 0x94 Topic Alias invalid`, async () => {
      const e = await engine();
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      pub.send({ cmd: 'publish', topic: 'bad/alias', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } } as Packet);
      assert.equal(await disconnectedWith(pub), 0x94);
      await e.stop();
    });
  }

  test('with Topic Alias Maximum 0 the broker advertises none and refuses any alias with 0x94', async () => {
    const e = await engine({ topicAliasMaximum: 0 });
    const pub = e.client(5);
    const connack = await connectWith(pub, 'pub');
    assert.equal(connack.properties?.topicAliasMaximum, undefined);
    pub.send({ cmd: 'publish', topic: 'no/alias', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } } as Packet);
    assert.equal(await disconnectedWith(pub), 0x94);
    await e.stop();
  });

  test('[MQTT-3.3.2-7] aliases do not carry over to the next connection of the session', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectPersistent(pub, 'pub');
    await publish(pub, 'carry/t', 'x', 0, { properties: { topicAlias: 2 } });
    pub.drop();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'pub')).sessionPresent, true);
    again.send({ cmd: 'publish', topic: '', payload: Buffer.from('y'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } } as Packet);
    assert.equal(await disconnectedWith(again), 0x82);
    await e.stop();
  });
});

describe('topic aliases to the client', () => {
  test('[MQTT-3.1.2-27] a client that sent no Topic Alias Maximum never gets an alias', async () => {
    const e = await engine();
    const w = await watcher(e, 'out/#', 5, 0);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    for (let i = 0; i < 3; i++) await publish(pub, 'out/t', String(i), 0);
    await publishesReach(w, 3);
    assert.ok(w.publishes.every((p) => p.topic === 'out/t' && p.properties?.topicAlias === undefined));
    await e.stop();
  });

  test('[MQTT-3.1.2-26] [MQTT-3.3.2-11] aliases up to the client\'s maximum: set with the name, then used alone; beyond it, full names', async () => {
    const e = await engine();
    const w = e.client(5);
    await connectWith(w, 'aliased', { properties: { topicAliasMaximum: 1 } });
    await subscribe(w, 'two/+', 0);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    for (const t of ['two/a', 'two/a', 'two/b', 'two/a']) await publish(pub, t, t, 0);
    await publishesReach(w, 4);
    assert.deepEqual(w.publishes.map((p) => [p.topic, p.properties?.topicAlias, text(p)]), [
      ['two/a', 1, 'two/a'], ['', 1, 'two/a'], ['two/b', undefined, 'two/b'], ['', 1, 'two/a'],
    ]);
    await e.stop();
  });

  test('[MQTT-3.3.2-7] the broker\'s aliases start afresh on the next connection', async () => {
    const e = await engine();
    const fields = { properties: { topicAliasMaximum: 2 } };
    const c = e.client(5);
    await connectPersistent(c, 'c', 3600, fields);
    await subscribe(c, 'fresh/t', 0);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'fresh/t', '1', 0);
    await publish(pub, 'fresh/t', '2', 0);
    assert.deepEqual((await publishesReach(c, 2)).map((p) => p.topic), ['fresh/t', '']);
    c.drop();
    const again = e.client(5);
    await connectPersistent(again, 'c', 3600, fields);
    await publish(pub, 'fresh/t', '3', 0);
    const [p] = await publishesReach(again, 1);
    assert.deepEqual([p!.topic, p!.properties?.topicAlias], ['fresh/t', 1], 'an alias of the old connection was used');
    await e.stop();
  });

  test('[MQTT-3.1.2-27] a retained message published through an alias reaches a later subscriber without it', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'ra/t', 'r', 0, { retain: true, properties: { topicAlias: 4 } });
    const late = await watcher(e, 'ra/t');
    const [p] = await publishesReach(late, 1);
    assert.deepEqual([p!.topic, p!.properties?.topicAlias], ['ra/t', undefined]);
    await e.stop();
  });
});

describe('Message Expiry Interval (fake clock)', () => {
  /** A persistent session subscribed to `topic`, offline. */
  async function offline(e: TestEngine, id: string, topic: string, version: Version = 5): Promise<void> {
    const c = e.client(version);
    await connectPersistent(c, id);
    await subscribe(c, topic, 1);
    c.drop();
    await settle();
  }

  for (const version of [4, 5] as const) {
    test(`[MQTT-3.3.2-5] a message that expires while queued is not delivered, and its row goes (${version === 5 ? '5.0' : '3.1.1'} subscriber)`, async () => {
      const e = await engine();
      await offline(e, 'late', 'exp/t', version);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'exp/t', 'expires', 1, { properties: { messageExpiryInterval: 10 } });
      await publish(pub, 'exp/t', 'stays', 1);
      e.clock.advance(10_000);
      const c = e.client(version);
      await connectPersistent(c, 'late');
      await publishesReach(c, 1);
      await quiet(c);
      assert.deepEqual(c.publishes.map(text), ['stays']);
      await acknowledge(c, c.publishes[0]!);
      await quiet(c);
      assert.equal((await e.store.load()).deliveries.length, 0, 'the expired delivery is still stored');
      await e.stop();
    });
  }

  test('[MQTT-3.3.2-6] the interval forwarded is the one received minus the time the message waited', async () => {
    const e = await engine();
    await offline(e, 'waits', 'wait/t');
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'wait/t', 'm', 1, { properties: { messageExpiryInterval: 60 } });
    e.clock.advance(25_000);
    const c = e.client(5);
    await connectPersistent(c, 'waits');
    const [p] = await publishesReach(c, 1);
    assert.equal(p!.properties?.messageExpiryInterval, 35);
    await e.stop();
  });

  test('[MQTT-3.3.2-5] [MQTT-3.3.2-6] a retained message expires too, and is sent with what is left of its interval', async () => {
    const e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'rx/t', 'r', 0, { retain: true, properties: { messageExpiryInterval: 30 } });
    e.clock.advance(10_000);
    const early = await watcher(e, 'rx/t');
    const [p] = await publishesReach(early, 1);
    assert.deepEqual([p!.retain, p!.properties?.messageExpiryInterval], [true, 20]);
    e.clock.advance(20_000);
    const late = e.client(5);
    await connectWith(late, 'late');
    await subscribe(late, 'rx/t', 0);
    await quiet(late);
    assert.equal(late.publishes.length, 0, 'an expired retained message was sent');
    await e.stop();
  });

  test('[MQTT-4.3.3-7] a QoS 2 message already sent is resent on resume even after its expiry passed', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectPersistent(c, 'started');
    await subscribe(c, 'started/t', 2);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'started/t', 'in-flight', 2, { properties: { messageExpiryInterval: 5 } });
    const [sent] = await publishesReach(c, 1);
    c.drop();
    e.clock.advance(60_000);
    const back = e.client(5);
    await connectPersistent(back, 'started');
    const [again] = await publishesReach(back, 1);
    assert.deepEqual([text(again!), again!.messageId, again!.dup], ['in-flight', sent!.messageId, true]);
    await e.stop();
  });
});
