// Flow control in the engine, in-process: the client's Receive Maximum and the broker's in-flight
// cap on what the broker sends, the broker's Receive Maximum on what it accepts (0x93), per-session
// queue limits, transport backpressure, and the client's Maximum Packet Size.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  acknowledge, connectPersistent, connectWith, disconnectedWith, engine, ping, publish, publishesReach, quiet, release, settle,
  subscribe, text, versionName, VERSIONS, type TestEngine, type Version,
} from './engine-steps.ts';

async function publisher(e: TestEngine, version: Version = 5): Promise<EngineClient> {
  const pub = e.client(version);
  await connectWith(pub, 'pub');
  return pub;
}

/** Send a QoS 2 PUBLISH without waiting for anything. */
function sendQos2(c: EngineClient, messageId: number, topic = 'in/t'): void {
  c.send({ cmd: 'publish', topic, payload: Buffer.from(String(messageId)), qos: 2, messageId, retain: false, dup: false });
}

describe('what the broker sends: Receive Maximum and the in-flight cap', () => {
  test('[MQTT-3.3.4-9] no more unacknowledged QoS 1 and 2 PUBLISH packets than the client\'s Receive Maximum', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub', { properties: { receiveMaximum: 2 } });
    await subscribe(sub, 'rm/t', 2);
    const pub = await publisher(e);
    for (const [i, qos] of ([1, 2, 1, 2, 1] as const).entries()) await publish(pub, 'rm/t', `m${i}`, qos);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['m0', 'm1'], 'more in flight than Receive Maximum');
    await acknowledge(sub, sub.publishes[0]!);
    await publishesReach(sub, 3);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['m0', 'm1', 'm2']);
    const m1 = sub.publishes[1]!;
    const from = sub.packets.length;
    sub.send({ cmd: 'pubrec', messageId: m1.messageId!, reasonCode: 0 } as Packet);
    await sub.waitFor((p) => p.cmd === 'pubrel', 'PUBREL', from);
    await quiet(sub);
    assert.equal(sub.publishes.length, 3, 'a QoS 2 delivery stopped counting at PUBREC');
    sub.send({ cmd: 'pubcomp', messageId: m1.messageId!, reasonCode: 0 } as Packet);
    await publishesReach(sub, 4);
    await e.stop();
  });

  test('[MQTT-3.3.4-10] [MQTT-4.9.0-3] a full window delays PUBLISH only: PINGRESP, SUBACK and PUBACK still go out', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub', { properties: { receiveMaximum: 1 } });
    await subscribe(sub, 'full/t', 1);
    const pub = await publisher(e);
    await publish(pub, 'full/t', 'held-1', 1);
    await publish(pub, 'full/t', 'held-2', 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['held-1']);
    await ping(sub);
    assert.deepEqual((await subscribe(sub, 'other/t', 1)).granted, [1]);
    const ack = await publish(sub, 'elsewhere', 'x', 1);
    assert.equal(ack?.cmd, 'puback');
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`the broker's in-flight cap (maxInflight) applies below a larger Receive Maximum (${versionName(version)})`, async () => {
      const e = await engine({ maxInflight: 2 });
      const sub = e.client(version);
      await connectWith(sub, 'sub', version === 5 ? { properties: { receiveMaximum: 100 } } : {});
      await subscribe(sub, 'cap/t', 1);
      const pub = await publisher(e);
      for (const m of ['a', 'b', 'c', 'd']) await publish(pub, 'cap/t', m, 1);
      await quiet(sub);
      assert.equal(sub.publishes.length, 2);
      sub.autoAck = true;
      for (const p of sub.publishes) await acknowledge(sub, p);
      await publishesReach(sub, 4);
      await e.stop();
    });
  }
});

describe('what the broker accepts: its own Receive Maximum', () => {
  test('§3.2.2.3.3 [MQTT-3.3.4-7] 5.0: Receive Maximum is advertised; one QoS 2 PUBLISH too many gets DISCONNECT 0x93', async () => {
    const e = await engine({ receiveMaximum: 2 });
    const pub = e.client(5);
    const connack = await connectWith(pub, 'pub');
    assert.equal(connack.properties?.receiveMaximum, 2);
    sendQos2(pub, 1);
    sendQos2(pub, 2);
    await pub.waitFor(() => pub.packets.filter((p) => p.cmd === 'pubrec').length === 2, 'two PUBRECs');
    await release(pub, 1); // one released: room for one more
    sendQos2(pub, 3);
    await pub.waitFor((p) => p.cmd === 'pubrec' && p.messageId === 3, 'PUBREC 3');
    sendQos2(pub, 4);
    assert.equal(await disconnectedWith(pub), 0x93);
    await e.stop();
  });

  test('3.1.1 has no Receive Maximum: a 3.1.1 client is not held to it, only to maxInflightInV3 (closed, no DISCONNECT)', async () => {
    const e = await engine({ receiveMaximum: 2, maxInflightInV3: 4 });
    const pub = e.client(4);
    await connectWith(pub, 'pub');
    for (const id of [1, 2, 3, 4]) sendQos2(pub, id);
    await pub.waitFor(() => pub.packets.filter((p) => p.cmd === 'pubrec').length === 4, 'four PUBRECs');
    assert.equal(pub.closed, false);
    sendQos2(pub, 5);
    await pub.whenClosed();
    assert.equal(pub.packets.some((p) => p.cmd === 'disconnect'), false, 'a 3.1.1 client got a DISCONNECT');
    await e.stop();
  });

  test('a repeated QoS 2 PUBLISH awaiting PUBREL does not count twice against Receive Maximum', async () => {
    const e = await engine({ receiveMaximum: 2 });
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    sendQos2(pub, 1);
    sendQos2(pub, 2);
    const repeat = { cmd: 'publish', topic: 'in/t', payload: Buffer.from('1'), qos: 2, messageId: 1, retain: false, dup: true } as Packet;
    pub.send(repeat);
    await pub.waitFor(() => pub.packets.filter((p) => p.cmd === 'pubrec').length === 3, 'three PUBRECs');
    await ping(pub);
    assert.equal(pub.closed, false);
    await e.stop();
  });
});

describe('queue limits and backpressure', () => {
  test('an offline session keeps at most maxQueuedMessages; the overflow is dropped and audited', async () => {
    const e = await engine({ maxQueuedMessages: 3 });
    const c = e.client(5);
    await connectPersistent(c, 'limited');
    await subscribe(c, 'lim/t', 1);
    c.drop();
    await settle();
    const pub = await publisher(e);
    for (const m of ['m0', 'm1', 'm2', 'm3', 'm4']) await publish(pub, 'lim/t', m, 1);
    const back = e.client(5);
    await connectPersistent(back, 'limited');
    await publishesReach(back, 3);
    await quiet(back);
    assert.deepEqual(back.publishes.map(text), ['m0', 'm1', 'm2']);
    await settle();
    assert.deepEqual(e.store.inner.auditEvents.filter((a) => a.event === 'queue_overflow').map((a) => a.clientId), ['limited']);
    await e.stop();
  });

  test('an offline session keeps at most maxQueuedBytes of payload; the overflow is dropped', async () => {
    const e = await engine({ maxQueuedBytes: 10 });
    const c = e.client(5);
    await connectPersistent(c, 'bytes');
    await subscribe(c, 'bytes/t', 1);
    c.drop();
    await settle();
    const pub = await publisher(e);
    for (const m of ['aaaa', 'bbbb', 'cccc']) await publish(pub, 'bytes/t', m, 1);
    const back = e.client(5);
    await connectPersistent(back, 'bytes');
    await publishesReach(back, 2);
    await quiet(back);
    assert.deepEqual(back.publishes.map(text), ['aaaa', 'bbbb']);
    await e.stop();
  });

  test('a transport above the soft limit pauses QoS 1 sending until it drains', async () => {
    const e = await engine({ softBufferBytes: 1000, hardBufferBytes: 5000 });
    const sub = e.client(5);
    await connectWith(sub, 'slow');
    await subscribe(sub, 'bp/t', 1);
    sub.channel.buffered = 2000; // the client stops reading
    const pub = await publisher(e);
    await publish(pub, 'bp/t', 'first', 1); // written; the write finds the transport full
    await publish(pub, 'bp/t', 'second', 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['first'], 'QoS 1 was sent into a full transport');
    sub.channel.buffered = 0;
    sub.channel.sink!.channelDrain();
    await publishesReach(sub, 2);
    assert.equal(text(sub.publishes[1]!), 'second');
    await e.stop();
  });

  test('QoS 0 is dropped, not queued, while the transport holds more than the hard limit', async () => {
    const e = await engine({ softBufferBytes: 1000, hardBufferBytes: 5000 });
    const sub = e.client(4);
    await connectWith(sub, 'slow');
    await subscribe(sub, 'bp0/t', 0);
    const pub = await publisher(e);
    sub.channel.buffered = 10_000;
    await publish(pub, 'bp0/t', 'dropped', 0);
    await quiet(sub);
    sub.channel.buffered = 0;
    sub.channel.sink!.channelDrain();
    await publish(pub, 'bp0/t', 'kept', 0);
    await publishesReach(sub, 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['kept']);
    await e.stop();
  });

  test('[MQTT-3.1.2-25] a message larger than the client\'s Maximum Packet Size is discarded as if delivered', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectPersistent(sub, 'small', 3600, { properties: { maximumPacketSize: 100, receiveMaximum: 1 } });
    await subscribe(sub, 'big/t', 1);
    const pub = await publisher(e);
    await publish(pub, 'big/t', 'x'.repeat(200), 1);
    await publish(pub, 'big/t', 'fits', 1);
    await publishesReach(sub, 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['fits'], 'the window stayed taken by a message that was never sent');
    await acknowledge(sub, sub.publishes[0]!);
    await quiet(sub);
    assert.equal((await e.store.load()).deliveries.length, 0, 'the discarded message is still stored for the session');
    await e.stop();
  });
});
