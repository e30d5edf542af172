// The codec fixture table (test/unit/mqtt/codec-fixtures.ts) run through the engine: client rows
// are fed in as raw bytes, and server rows are what the engine must write, byte for byte, in the
// situation each row stands for. A change to the wire format or to what the engine answers fails here.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  connectWith, disconnectedWith, engine, fixture, ping, publish, publishesReach, quiet, subscribe, text, type Suback, type TestEngine,
  type Version,
} from './engine-steps.ts';

/** Send `input` (raw bytes or a packet) and resolve with exactly the bytes written in answer, up to the packet `cmd`. */
async function answer(c: EngineClient, input: Buffer | Packet, cmd: string): Promise<string> {
  const mark = c.bytesOut.length;
  const from = c.packets.length;
  if (Buffer.isBuffer(input)) c.sendBytes(input);
  else c.send(input);
  await c.waitFor((p) => p.cmd === cmd, cmd, from);
  return c.bytesOut.subarray(mark).toString('hex');
}

const wire = (name: string): string => fixture(name).wire.toString('hex');

async function connected(e: TestEngine, version: Version, id: string): Promise<EngineClient> {
  const c = e.client(version);
  await connectWith(c, id);
  return c;
}

describe('server rows: the bytes the engine writes', () => {
  test('CONNACK 3.1.1 accepted, for the CONNECT 3.1.1 row', async () => {
    const e = await engine();
    const c = e.client(4);
    assert.equal(await answer(c, fixture('CONNECT 3.1.1 minimal, clean session').wire, 'connack'), wire('CONNACK 3.1.1 accepted'));
    assert.equal(await answer(c, fixture('PINGREQ').wire, 'pingresp'), wire('PINGRESP'));
    await e.stop();
  });

  test('PUBACK 3.1.1, and PUBACK 5.0 with the reason code omitted or 0x10 No matching subscribers [MQTT-3.4.2-1]', async () => {
    const e = await engine();
    const v4 = await connected(e, 4, 'v4');
    const v5 = await connected(e, 5, 'v5');
    const q1 = (topic: string): Packet => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: 5, retain: false, dup: false });
    assert.equal(await answer(v4, q1('nobody/t'), 'puback'), wire('PUBACK 3.1.1'), '3.1.1 has no reason code');
    assert.equal(await answer(v5, q1('nobody/t'), 'puback'), wire('PUBACK 5.0 No matching subscribers'));
    await subscribe(await connected(e, 5, 'sub'), 'somebody/t', 0);
    assert.equal(await answer(v5, q1('somebody/t'), 'puback'), wire('PUBACK 5.0 success, reason code omitted'));
    await e.stop();
  });

  test('PUBREC 3.1.1 for a QoS 2 PUBLISH; PUBREL for a PUBREC row of an unknown id (3.1.1: plain, 5.0: 0x92)', async () => {
    const e = await engine();
    const v4 = await connected(e, 4, 'v4');
    const v5 = await connected(e, 5, 'v5');
    const q2: Packet = { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, messageId: 6, retain: false, dup: false };
    assert.equal(await answer(v4, q2, 'pubrec'), wire('PUBREC 3.1.1'));
    assert.equal(await answer(v4, fixture('PUBREC 3.1.1').wire, 'pubrel'), wire('PUBREL 3.1.1'));
    assert.equal(await answer(v5, { cmd: 'pubrec', messageId: 6 } as Packet, 'pubrel'), wire('PUBREL 5.0 Packet Identifier not found'));
    await e.stop();
  });

  test('PUBCOMP for a PUBREL row of an unknown id (3.1.1: plain, 5.0: 0x92)', async () => {
    const e = await engine();
    const v4 = await connected(e, 4, 'v4');
    const v5 = await connected(e, 5, 'v5');
    assert.equal(await answer(v4, fixture('PUBREL 3.1.1').wire, 'pubcomp'), wire('PUBCOMP 3.1.1'));
    assert.equal(await answer(v5, fixture('PUBREL 5.0 Packet Identifier not found').wire, 'pubcomp'), wire('PUBCOMP 5.0 Packet Identifier not found'));
    await e.stop();
  });

  test('SUBACK 3.1.1 (0x80 for a filter refused) and SUBACK 5.0 (0x8F Topic Filter invalid) [MQTT-3.8.4-6]', async () => {
    const e = await engine();
    const v4 = await connected(e, 4, 'v4');
    const v5 = await connected(e, 5, 'v5');
    const sub4 = { cmd: 'subscribe', messageId: 9, subscriptions: [{ topic: 'x', qos: 0 }, { topic: 'y', qos: 1 }, { topic: 'a/#/b', qos: 0 }] } as Packet;
    assert.equal(await answer(v4, sub4, 'suback'), wire('SUBACK 3.1.1'));
    const sub5 = { cmd: 'subscribe', messageId: 9, subscriptions: [{ topic: 'x', qos: 2, nl: false, rap: false, rh: 0 }, { topic: 'a/#/b', qos: 0, nl: false, rap: false, rh: 0 }] } as Packet;
    assert.equal(await answer(v5, sub5, 'suback'), wire('SUBACK 5.0'));
    await e.stop();
  });

  test('UNSUBACK 3.1.1 (no payload) and UNSUBACK 5.0 (0x11 No subscription existed) [MQTT-3.10.4-4]', async () => {
    const e = await engine();
    const v4 = await connected(e, 4, 'v4');
    const v5 = await connected(e, 5, 'v5');
    await subscribe(v4, 'x', 0);
    await subscribe(v5, 'x', 0);
    const unsub = { cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['x', 'nope'] } as Packet;
    assert.equal(await answer(v4, unsub, 'unsuback'), wire('UNSUBACK 3.1.1 has no payload'));
    assert.equal(await answer(v5, unsub, 'unsuback'), wire('UNSUBACK 5.0'));
    await e.stop();
  });

  test('DISCONNECT 5.0 Session taken over, to the connection a second CONNECT replaces [MQTT-3.1.4-3]', async () => {
    const e = await engine();
    const first = await connected(e, 5, 'twin');
    const mark = first.bytesOut.length;
    await connected(e, 5, 'twin');
    await first.whenClosed();
    assert.equal(first.bytesOut.subarray(mark).toString('hex'), wire('DISCONNECT 5.0 Session taken over'));
    await e.stop();
  });
});

describe('PUBLISH rows through the engine', () => {
  for (const name of ['PUBLISH 3.1.1 QoS 0', 'PUBLISH 5.0 QoS 0 without properties']) {
    test(`${name}: a subscriber of the same version receives exactly these bytes`, async () => {
      const e = await engine();
      const row = fixture(name);
      const version = row.version as Version;
      const sub = await connected(e, version, 'sub');
      await subscribe(sub, (row.packet as { topicName: string }).topicName, 0);
      const mark = sub.bytesOut.length;
      const pub = await connected(e, version, 'pub');
      pub.sendBytes(row.wire);
      await publishesReach(sub, 1);
      assert.equal(sub.bytesOut.subarray(mark).toString('hex'), row.wire.toString('hex'));
      await e.stop();
    });
  }

  test('PUBLISH 5.0 QoS 1 with properties: forwarded unaltered, without the publisher\'s topic alias; a 3.1.1 subscriber gets no properties', async () => {
    const e = await engine();
    const sub5 = await connected(e, 5, 'sub5');
    await subscribe(sub5, 't', 1);
    const sub4 = await connected(e, 4, 'sub4');
    await subscribe(sub4, 't', 1);
    const pub = await connected(e, 5, 'pub');
    const ack = await answer(pub, fixture('PUBLISH 5.0 QoS 1 with properties').wire, 'puback');
    assert.equal(ack, '40020001');
    const [p] = await publishesReach(sub5, 1);
    const props = p!.properties ?? {};
    // [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20] unaltered; [MQTT-3.3.2-6] nothing waited
    assert.equal(props.payloadFormatIndicator, true);
    assert.equal(props.messageExpiryInterval, 100);
    assert.equal(props.contentType, 'c');
    assert.equal(props.responseTopic, 'r');
    assert.deepEqual(props.correlationData, Buffer.from([1, 2]));
    assert.deepEqual({ ...props.userProperties }, { k: ['v1', 'v2'] }, '[MQTT-3.3.2-17] [MQTT-3.3.2-18] user properties, in order');
    assert.equal(props.topicAlias, undefined, '[MQTT-3.1.2-27] the publisher\'s alias was forwarded');
    assert.deepEqual([p!.topic, text(p!), p!.qos], ['t', 'p', 1]);
    const [q] = await publishesReach(sub4, 1);
    assert.deepEqual([q!.topic, text(q!), q!.properties], ['t', 'p', undefined]);
    await e.stop();
  });

  test('PUBLISH 3.1.1 QoS 1 retain: PUBACK, then a later subscriber gets it as retained', async () => {
    const e = await engine();
    const pub = await connected(e, 4, 'pub');
    assert.equal(await answer(pub, fixture('PUBLISH 3.1.1 QoS 1 retain').wire, 'puback'), '40020007');
    const late = await connected(e, 4, 'late');
    await subscribe(late, 'a/b', 1);
    const [p] = await publishesReach(late, 1);
    assert.deepEqual([p!.topic, text(p!), p!.qos, p!.retain], ['a/b', 'hi', 1, true]);
    await e.stop();
  });

  test('PUBLISH 3.1.1 QoS 2 DUP with an empty payload: routed once however often it comes before PUBREL [MQTT-4.3.3-10]', async () => {
    const e = await engine();
    const sub = await connected(e, 4, 'sub');
    await subscribe(sub, 'a', 2);
    const pub = await connected(e, 4, 'pub');
    const row = fixture('PUBLISH 3.1.1 QoS 2 DUP, empty payload').wire;
    assert.equal(await answer(pub, row, 'pubrec'), '50020102');
    assert.equal(await answer(pub, row, 'pubrec'), '50020102');
    await quiet(sub);
    assert.deepEqual(sub.publishes.map((p) => [p.topic, p.payload.length]), [['a', 0]]);
    await e.stop();
  });
});

describe('client rows through the engine', () => {
  test('SUBSCRIBE 3.1.1 two filters and UNSUBSCRIBE 3.1.1: SUBACK grants each, UNSUBACK answers the packet id', async () => {
    const e = await engine();
    const c = await connected(e, 4, 'c');
    const from = c.packets.length;
    c.sendBytes(fixture('SUBSCRIBE 3.1.1 two filters').wire);
    const ack = await c.waitFor((p) => p.cmd === 'suback', 'SUBACK', from) as Suback;
    assert.deepEqual([ack.messageId, ack.granted], [9, [1, 0]]);
    assert.equal(await answer(c, fixture('UNSUBSCRIBE 3.1.1').wire, 'unsuback'), 'b002000a');
    await e.stop();
  });

  test('SUBSCRIBE 5.0 row (id 42, No Local, Retain As Published, Retain Handling 2) behaves as each option says', async () => {
    const e = await engine();
    const other = await connected(e, 5, 'other');
    await publish(other, 'a/old', 'before', 0, { retain: true });
    const c = await connected(e, 5, 'c');
    const from = c.packets.length;
    c.sendBytes(fixture('SUBSCRIBE 5.0 with subscription identifier and options (QoS 2, No Local, RAP, RH 2)').wire);
    const ack = await c.waitFor((p) => p.cmd === 'suback', 'SUBACK', from) as Suback;
    assert.deepEqual(ack.granted, [2]);
    await publish(c, 'a/own', 'mine', 0); // No Local
    await publish(other, 'a/new', 'theirs', 1, { retain: true });
    await publishesReach(c, 1);
    await quiet(c);
    assert.equal(c.publishes.length, 1, 'Retain Handling 2 sent a retained message, or No Local returned its own');
    const [p] = c.publishes;
    assert.deepEqual([p!.topic, p!.retain, p!.qos, p!.properties?.subscriptionIdentifier], ['a/new', true, 1, 42]);
    await e.stop();
  });

  test('CONNECT 5.0 with an empty client id: the broker assigns one and says which [MQTT-3.2.2-16]', async () => {
    const e = await engine();
    const c = e.client(5);
    c.sendBytes(fixture('CONNECT 5.0 empty client id').wire);
    const connack = await c.waitFor((p) => p.cmd === 'connack', 'CONNACK') as Extract<Packet, { cmd: 'connack' }>;
    assert.equal(connack.reasonCode, 0);
    assert.match(String(connack.properties?.assignedClientIdentifier), /.+/);
    await ping(c);
    await e.stop();
  });

  test('AUTH 5.0 row without an authentication method negotiated: DISCONNECT 0x82 Protocol Error', async () => {
    const e = await engine();
    const c = await connected(e, 5, 'c');
    c.sendBytes(fixture('AUTH 5.0 continue authentication').wire);
    assert.equal(await disconnectedWith(c), 0x82);
    await e.stop();
  });
});
