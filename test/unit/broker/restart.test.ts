// The durability contract (DESIGN §3) in-process: a "crash" is a new broker loaded from the same
// store while the old one is abandoned without shutdown. What was acknowledged, in flight, awaiting
// PUBREL, retained or willed comes back; deadlines count from stored times.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnectPacket, Packet } from 'mqtt-packet';
import {
  connectPersistent, connectWith, engine, publish, publishesReach, quiet, release, settle, subscribe, text, versionName, VERSIONS,
} from './engine-steps.ts';

describe('after a crash', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-4.4.0-1] in-flight QoS 1 is resent with DUP 1 and its packet id; QoS 2 past PUBREC resumes with PUBREL (${versionName(version)})`, async () => {
      let e = await engine();
      const c = e.client(version);
      await connectPersistent(c, 'c');
      await subscribe(c, 'rs/1', 1);
      await subscribe(c, 'rs/2', 2);
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'rs/1', 'one', 1);
      await publish(pub, 'rs/2', 'two', 2);
      const got = await publishesReach(c, 2);
      const one = got.find((p) => p.qos === 1)!;
      const two = got.find((p) => p.qos === 2)!;
      const from = c.packets.length;
      c.send({ cmd: 'pubrec', messageId: two.messageId!, reasonCode: 0 } as Packet);
      await c.waitFor((p) => p.cmd === 'pubrel', 'PUBREL', from);

      e = await e.crash();
      const back = e.client(version);
      assert.equal((await connectPersistent(back, 'c')).sessionPresent, true);
      const rel = await back.waitFor((p) => p.cmd === 'pubrel', 'PUBREL after the crash');
      assert.equal((rel as { messageId: number }).messageId, two.messageId, 'DESIGN §3.2: outbound PUBREC state was not kept');
      const [again] = await publishesReach(back, 1);
      await quiet(back);
      assert.equal(back.publishes.length, 1, 'the QoS 2 message was sent again after its PUBREC');
      assert.deepEqual([text(again!), again!.messageId, again!.dup], ['one', one.messageId, true]);
      await e.stop();
    });
  }

  test('[MQTT-4.3.3-10] an inbound QoS 2 id awaiting PUBREL is kept: the repeated PUBLISH is not routed again', async () => {
    let e = await engine();
    const pub = e.client(5);
    await connectPersistent(pub, 'pub');
    await publish(pub, 'in2/t', 'once', 2, { messageId: 77 });
    e = await e.crash();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'in2/t', 2);
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'pub')).sessionPresent, true);
    await publish(again, 'in2/t', 'once', 2, { messageId: 77, dup: true });
    assert.equal(((await release(again, 77)) as { reasonCode?: number }).reasonCode ?? 0, 0, 'the id was lost in the crash');
    await quiet(sub);
    assert.equal(sub.publishes.length, 0, 'routed a second time after the crash');
    await e.stop();
  });

  test('DESIGN §3.1 a QoS 1 message acknowledged to its publisher reaches an offline subscriber after the crash', async () => {
    let e = await engine();
    const sub = e.client(4);
    await connectPersistent(sub, 'sub');
    await subscribe(sub, 'ack/t', 1);
    sub.drop();
    await settle();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'ack/t', 'acknowledged', 1);
    e = await e.crash();
    const back = e.client(4);
    assert.equal((await connectPersistent(back, 'sub')).sessionPresent, true);
    assert.deepEqual((await publishesReach(back, 1)).map(text), ['acknowledged']);
    await e.stop();
  });

  test('DESIGN §3.3 retained messages come back, and an empty retained PUBLISH stays a removal', async () => {
    let e = await engine();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'keep/a', 'kept', 1, { retain: true });
    await publish(pub, 'keep/b', 'removed', 1, { retain: true });
    await publish(pub, 'keep/b', '', 1, { retain: true });
    e = await e.crash();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    await subscribe(sub, 'keep/+', 1);
    await publishesReach(sub, 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map((p) => [p.topic, text(p), p.retain]), [['keep/a', 'kept', true]]);
    await e.stop();
  });

  test('DESIGN §3.4 the will of a session connected at the crash is published after its delay', async () => {
    let e = await engine();
    const c = e.client(5);
    await connectPersistent(c, 'dies', 3600, {
      will: { topic: 'cw/t', payload: Buffer.from('crashed'), qos: 1, retain: false, properties: { willDelayInterval: 10 } },
    } as Partial<IConnectPacket>);
    await settle();
    e = await e.crash();
    const w = e.client(5);
    await connectWith(w, 'watcher');
    await subscribe(w, 'cw/t', 1);
    e.clock.advance(10_000 - 1);
    await quiet(w);
    assert.equal(w.publishes.length, 0, 'the will left before its delay');
    e.clock.advance(1);
    assert.deepEqual((await publishesReach(w, 1)).map(text), ['crashed']);
    await e.stop();
  });

  test('DESIGN §3.5 [MQTT-3.3.2-5] a message whose expiry passes while the broker is down is not delivered', async () => {
    let e = await engine();
    const sub = e.client(5);
    await connectPersistent(sub, 'sub');
    await subscribe(sub, 'down/t', 1);
    sub.drop();
    await settle();
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    await publish(pub, 'down/t', 'expires', 1, { properties: { messageExpiryInterval: 30 } });
    await publish(pub, 'down/t', 'stays', 1);
    e = await e.crash();
    e.clock.advance(60_000);
    const back = e.client(5);
    await connectPersistent(back, 'sub');
    await publishesReach(back, 1);
    await quiet(back);
    assert.deepEqual(back.publishes.map(text), ['stays']);
    await e.stop();
  });
});
