// QoS 1 and QoS 2 state machines in both directions, in-process: acknowledgements and their
// packet ids, duplicates, packet id reuse, inbound QoS 2 never routed twice (across a reconnect
// and a restart), the outbound window, and what a persistent session's rows hold at each step.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  acknowledge, connectPersistent, connectWith, engine, ping, publish, publishesReach, quiet, release, settle, subscribe, text,
  versionName, VERSIONS, type Publish, type TestEngine, type Version,
} from './engine-steps.ts';

/** A connected subscriber on `topic` at `qos` (a clean 5.0 session unless `persistent`). */
async function subscriber(e: TestEngine, topic: string, qos: 0 | 1 | 2, version: Version = 5, persistent = false): Promise<EngineClient> {
  const c = e.client(version);
  if (persistent) await connectPersistent(c, `sub-${version}`);
  else await connectWith(c, `sub-${version}`);
  await subscribe(c, topic, qos);
  return c;
}

const acks = (c: EngineClient, cmd: string): number[] => c.packets.filter((p) => p.cmd === cmd).map((p) => (p as { messageId: number }).messageId);

describe('inbound QoS 1 and QoS 2 (client to broker)', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-4.3.2-3] [MQTT-4.3.2-4] PUBACK carries the packet id, which is then free for a new message (${versionName(version)})`, async () => {
      const e = await engine();
      const sub = await subscriber(e, 'q1/t', 1);
      const pub = e.client(version);
      await connectWith(pub, 'pub');
      const first = await publish(pub, 'q1/t', 'one', 1, { messageId: 3 });
      assert.equal((first as { messageId: number }).messageId, 3);
      await publish(pub, 'q1/t', 'two', 1, { messageId: 3 });
      await publishesReach(sub, 2);
      assert.deepEqual(sub.publishes.map(text), ['one', 'two']);
      await e.stop();
    });

    for (const persistent of [false, true]) {
      test(`[MQTT-4.3.3-8] [MQTT-4.3.3-10] [MQTT-4.3.3-11] QoS 2: PUBREC, a repeat before PUBREL is not routed again, PUBCOMP (${versionName(version)}, ${persistent ? 'persistent' : 'clean'} session)`, async () => {
        const e = await engine();
        const sub = await subscriber(e, 'q2/t', 2);
        const pub = e.client(version);
        if (persistent) await connectPersistent(pub, 'pub');
        else await connectWith(pub, 'pub');
        const rec = await publish(pub, 'q2/t', 'once', 2, { messageId: 11 }) as Extract<Packet, { cmd: 'pubrec' }>;
        assert.equal(rec.reasonCode ?? 0, 0);
        await publishesReach(sub, 1);
        const again = await publish(pub, 'q2/t', 'once', 2, { messageId: 11, dup: true }) as Extract<Packet, { cmd: 'pubrec' }>;
        assert.equal(again.messageId, 11);
        const comp = await release(pub, 11) as Extract<Packet, { cmd: 'pubcomp' }>;
        assert.equal(comp.reasonCode ?? 0, 0);
        await quiet(sub);
        assert.deepEqual(sub.publishes.map(text), ['once'], 'the repeated PUBLISH was routed again');
        if (persistent) assert.equal((await e.store.load()).inboundQos2.length, 0, 'the released id is still stored');
        await e.stop();
      });
    }

    test(`[MQTT-4.3.3-12] after PUBCOMP the same packet id is a new message (${versionName(version)})`, async () => {
      const e = await engine();
      const sub = await subscriber(e, 'q2/reuse', 2);
      const pub = e.client(version);
      await connectWith(pub, 'pub');
      await publish(pub, 'q2/reuse', 'first', 2, { messageId: 12 });
      await release(pub, 12);
      await publish(pub, 'q2/reuse', 'second', 2, { messageId: 12 });
      await release(pub, 12);
      await publishesReach(sub, 2);
      assert.deepEqual(sub.publishes.map(text), ['first', 'second']);
      await e.stop();
    });

    test(`[MQTT-4.3.3-10] an id awaiting PUBREL survives a reconnect and a restart: the repeat is not routed (${versionName(version)})`, async () => {
      let e = await engine();
      const pub = e.client(version);
      await connectPersistent(pub, 'pub');
      const sub = await subscriber(e, 'q2/keep', 2);
      await publish(pub, 'q2/keep', 'once', 2, { messageId: 21 });
      await publishesReach(sub, 1);
      pub.drop();
      const back = e.client(version);
      assert.equal((await connectPersistent(back, 'pub')).sessionPresent, true);
      await publish(back, 'q2/keep', 'once', 2, { messageId: 21, dup: true });
      await quiet(sub);
      assert.equal(sub.publishes.length, 1, 'routed again after a reconnect');
      back.drop();

      e = await e.restart();
      const sub2 = await subscriber(e, 'q2/keep', 2);
      const again = e.client(version);
      assert.equal((await connectPersistent(again, 'pub')).sessionPresent, true);
      await publish(again, 'q2/keep', 'once', 2, { messageId: 21, dup: true });
      await quiet(sub2);
      assert.equal(sub2.publishes.length, 0, 'routed again after a restart');
      assert.equal(((await release(again, 21)) as { reasonCode?: number }).reasonCode ?? 0, 0, 'the id was not known after the restart');
      await e.stop();
    });

    test(`[MQTT-3.3.1-3] DUP on a delivery is set by the broker, not copied from the incoming PUBLISH (${versionName(version)})`, async () => {
      const e = await engine();
      const sub = await subscriber(e, 'dup/t', 1, version);
      const pub = e.client(version);
      await connectWith(pub, 'pub');
      await publish(pub, 'dup/t', 'resent-by-publisher', 1, { dup: true });
      const [p] = await publishesReach(sub, 1);
      assert.equal(p!.dup, false);
      await e.stop();
    });

    test(`[MQTT-4.6.0-2] [MQTT-4.6.0-6] PUBACKs leave in PUBLISH order, and a subscriber gets the messages in that order (${versionName(version)})`, async () => {
      const e = await engine();
      const sub = await subscriber(e, 'ord/t', 1, version, true);
      sub.autoAck = true;
      const pub = e.client(version);
      await connectPersistent(pub, 'pub');
      const ids = Array.from({ length: 20 }, (_, i) => 300 + i);
      for (const id of ids) {
        pub.send({ cmd: 'publish', topic: 'ord/t', payload: Buffer.from(String(id)), qos: 1, messageId: id, retain: false, dup: false });
      }
      await pub.waitFor(() => acks(pub, 'puback').length === ids.length, 'every PUBACK');
      assert.deepEqual(acks(pub, 'puback'), ids);
      await publishesReach(sub, ids.length);
      assert.deepEqual(sub.publishes.map(text), ids.map(String));
      await e.stop();
    });
  }
});

describe('outbound QoS 1 and QoS 2 (broker to client)', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-4.3.2-1] [MQTT-4.3.2-2] [MQTT-2.2.1-3] QoS 1 deliveries: distinct non-zero ids, DUP 0, in flight until PUBACK (${versionName(version)})`, async () => {
      const e = await engine({ maxInflight: 3 });
      const sub = await subscriber(e, 'out1/t', 1, version);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      for (const m of ['a', 'b', 'c', 'd']) await publish(pub, 'out1/t', m, 1);
      await publishesReach(sub, 3);
      await quiet(sub);
      const sent = sub.publishes;
      assert.equal(sent.length, 3, 'more in flight than the window');
      assert.ok(sent.every((p) => p.qos === 1 && !p.dup && p.messageId! > 0));
      assert.equal(new Set(sent.map((p) => p.messageId)).size, 3, 'a packet id in use was used again');
      sub.send({ cmd: 'puback', messageId: 9999, reasonCode: 0 } as Packet); // unknown id: ignored
      await quiet(sub);
      assert.equal(sub.publishes.length, 3, 'a PUBACK for an unknown id freed a slot');
      await acknowledge(sub, sent[1]!);
      const [, , , d] = await publishesReach(sub, 4);
      assert.equal(text(d!), 'd');
      assert.ok(!sent.slice(0, 1).concat(sent.slice(2)).some((p) => p.messageId === d!.messageId), 'an id still in flight was reused');
      await e.stop();
    });

    test(`[MQTT-4.3.3-1] [MQTT-4.3.3-3] [MQTT-4.3.3-5] QoS 2 deliveries: PUBREC is answered with PUBREL; only PUBCOMP frees the slot (${versionName(version)})`, async () => {
      const e = await engine({ maxInflight: 1 });
      const sub = await subscriber(e, 'out2/t', 2, version);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'out2/t', 'first', 2);
      await publish(pub, 'out2/t', 'second', 2);
      const [first] = await publishesReach(sub, 1);
      assert.equal(first!.dup, false);
      const from = sub.packets.length;
      sub.send({ cmd: 'pubrec', messageId: first!.messageId!, reasonCode: 0 } as Packet);
      const rel = await sub.waitFor((p) => p.cmd === 'pubrel', 'PUBREL', from);
      assert.equal((rel as { messageId: number }).messageId, first!.messageId);
      await quiet(sub);
      assert.equal(sub.publishes.length, 1, 'PUBREC freed the window slot');
      sub.send({ cmd: 'pubrec', messageId: first!.messageId!, reasonCode: 0 } as Packet); // repeated PUBREC
      await sub.waitFor((p) => p.cmd === 'pubrel', 'PUBREL again', sub.packets.indexOf(rel) + 1);
      sub.send({ cmd: 'pubcomp', messageId: first!.messageId!, reasonCode: 0 } as Packet);
      const [, second] = await publishesReach(sub, 2);
      assert.equal(text(second!), 'second');
      await e.stop();
    });
  }

  test('[MQTT-4.6.0-6] QoS 1 never overtakes a QoS 2 message waiting for its commit (persistent subscriber)', async () => {
    const e = await engine();
    const sub = await subscriber(e, 'mixed/t', 2, 5, true);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    const order = ['q2-a', 'q1-b', 'q2-c', 'q1-d', 'q1-e'];
    for (const [i, m] of order.entries()) {
      pub.send({ cmd: 'publish', topic: 'mixed/t', payload: Buffer.from(m), qos: m.startsWith('q2') ? 2 : 1, messageId: 400 + i, retain: false, dup: false });
    }
    await publishesReach(sub, order.length);
    assert.deepEqual(sub.publishes.map(text), order);
    await e.stop();
  });

  test('[MQTT-4.3.3-4] a PUBREC with a reason code of 0x80 or more ends the delivery: no PUBREL, the slot is free', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub', { properties: { receiveMaximum: 1 } });
    await subscribe(sub, 'refuse/t', 2);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'refuse/t', 'refused', 2);
    await publish(pub, 'refuse/t', 'next', 2);
    const [first] = await publishesReach(sub, 1);
    sub.send({ cmd: 'pubrec', messageId: first!.messageId!, reasonCode: 0x80 } as Packet);
    const [, next] = await publishesReach(sub, 2);
    assert.equal(text(next!), 'next');
    assert.equal(sub.packets.some((p) => p.cmd === 'pubrel'), false, 'PUBREL after a failed PUBREC');
    await e.stop();
  });

  test('persistent session: a QoS 2 PUBLISH leaves only with its packet id stored, PUBREC is stored before PUBREL, PUBCOMP deletes the row', async () => {
    const e = await engine();
    const sub = await subscriber(e, 'durable/t', 2, 5, true);
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'durable/t', 'kept', 2);
    const [p] = await publishesReach(sub, 1);
    const rows = () => e.store.load().then((s) => s.deliveries.filter((d) => d.clientId === 'sub-5'));
    assert.deepEqual((await rows()).map((d) => [d.packetId, d.state]), [[p!.messageId, 'sent']]);
    const from = sub.packets.length;
    sub.send({ cmd: 'pubrec', messageId: p!.messageId!, reasonCode: 0 } as Packet);
    await sub.waitFor((x) => x.cmd === 'pubrel', 'PUBREL', from);
    assert.deepEqual((await rows()).map((d) => d.state), ['pubrec'], 'PUBREL before the PUBREC state was stored');
    sub.send({ cmd: 'pubcomp', messageId: p!.messageId!, reasonCode: 0 } as Packet);
    await settle();
    await ping(sub);
    assert.deepEqual(await rows(), [], 'the completed delivery is still stored');
    await e.stop();
  });

  test('persistent session: a QoS 1 delivery is stored until its PUBACK and deleted by it', async () => {
    const e = await engine();
    const sub = await subscriber(e, 'durable/q1', 1, 4, true);
    const pub = e.client(4);
    await connectWith(pub, 'pub');
    await publish(pub, 'durable/q1', 'kept', 1);
    const [p] = await publishesReach(sub, 1) as Publish[];
    await settle();
    const before = (await e.store.load()).deliveries.filter((d) => d.clientId === 'sub-4');
    assert.deepEqual(before.map((d) => [d.packetId, d.state]), [[p!.messageId, 'sent']]);
    await acknowledge(sub, p!);
    await quiet(sub);
    assert.equal((await e.store.load()).deliveries.length, 0);
    await e.stop();
  });
});
