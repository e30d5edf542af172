// What the engine tells clients when a commit fails (STYLE §3 step 10: never acknowledge what was
// not stored), in-process on a store that refuses commits on demand and a fake clock for retries.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  connectPersistent, connectWith, engine, publish, publishesReach, quiet, settle, subscribe, text, versionName, VERSIONS,
  type Connack, type TestEngine,
} from './engine-steps.ts';

/** A persistent 5.0 subscriber on `topic` at QoS 2: routing to it needs a commit. */
async function durableSubscriber(e: TestEngine, topic: string): Promise<EngineClient> {
  const sub = e.client(5);
  await connectPersistent(sub, 'durable-sub');
  await subscribe(sub, topic, 2);
  return sub;
}

describe('a PUBLISH whose commit fails', () => {
  test('[MQTT-4.3.3-9] 5.0: PUBREC 0x83, nothing delivered, and the packet id then starts a new message', async () => {
    const e = await engine();
    const sub = await durableSubscriber(e, 'fail/t');
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    e.store.failWhen = (ops) => ops.includes('insertMessage');
    const rec = await publish(pub, 'fail/t', 'refused', 2, { messageId: 8 }) as { reasonCode?: number };
    assert.equal(rec.reasonCode, 0x83);
    await quiet(sub);
    assert.equal(sub.publishes.length, 0, 'a message that was not stored was delivered');
    e.store.failWhen = undefined;
    const ok = await publish(pub, 'fail/t', 'stored', 2, { messageId: 8 }) as { reasonCode?: number };
    assert.equal(ok.reasonCode ?? 0, 0);
    assert.deepEqual((await publishesReach(sub, 1)).map(text), ['stored']);
    await e.stop();
  });

  test('3.1.1: the PUBREC is held while the store refuses and sent once a retry commits; delivered once', async () => {
    const e = await engine();
    const sub = await durableSubscriber(e, 'held/t');
    const pub = e.client(4);
    await connectWith(pub, 'pub');
    e.store.failWhen = (ops) => ops.includes('insertMessage');
    pub.send({ cmd: 'publish', topic: 'held/t', payload: Buffer.from('held'), qos: 2, messageId: 9, retain: false, dup: false });
    await settle();
    e.clock.advance(250); // a retry, refused too
    await quiet(sub); // (the publisher's PINGRESP would wait behind its held PUBREC: replies keep their order)
    assert.ok(e.store.failed >= 2, `commits refused: ${e.store.failed}`);
    assert.equal(pub.packets.some((p) => p.cmd === 'pubrec'), false, 'PUBREC for a message not stored');
    assert.equal(sub.publishes.length, 0);
    e.store.failWhen = undefined;
    e.clock.advance(2000);
    await pub.waitFor((p) => p.cmd === 'pubrec' && p.messageId === 9, 'PUBREC after the store recovered');
    await publishesReach(sub, 1);
    await quiet(sub);
    assert.deepEqual(sub.publishes.map(text), ['held']);
    await e.stop();
  });
});

describe('SUBSCRIBE and CONNECT whose commit fails', () => {
  for (const version of VERSIONS) {
    test(`SUBSCRIBE: ${version === 5 ? 'SUBACK 0x83' : 'the connection is closed'}, and the subscription does not route (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      await connectPersistent(c, 'subscriber');
      e.store.failWhen = (ops) => ops.includes('putSubscription');
      const from = c.packets.length;
      c.send({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic: 'nosub/t', qos: 1 }] } as Packet);
      if (version === 5) {
        const ack = await c.waitFor((p) => p.cmd === 'suback', 'SUBACK', from) as { granted: number[] };
        assert.deepEqual(ack.granted, [0x83]);
      } else {
        await c.whenClosed();
        assert.equal(c.packets.slice(from).some((p) => p.cmd === 'suback'), false);
      }
      e.store.failWhen = undefined;
      const live = version === 5 ? c : e.client(version);
      if (live !== c) await connectPersistent(live, 'subscriber');
      const pub = e.client(5);
      await connectWith(pub, 'pub');
      await publish(pub, 'nosub/t', 'x', 1);
      await quiet(live);
      assert.equal(live.publishes.length, 0, 'a subscription whose commit failed routes');
      await e.stop();
    });

    test(`CONNECT: refused with Server unavailable, and no session is left (${versionName(version)})`, async () => {
      const e = await engine();
      e.store.failWhen = (ops) => ops.includes('putSession');
      const c = e.client(version);
      const connack = await connectPersistent(c, 'unstored');
      assert.equal(connack.returnCode ?? connack.reasonCode, version === 5 ? 0x88 : 3);
      await c.whenClosed();
      e.store.failWhen = undefined;
      const again = e.client(version);
      const ok: Connack = await connectPersistent(again, 'unstored');
      assert.deepEqual([ok.returnCode ?? ok.reasonCode, ok.sessionPresent], [0, false]);
      await e.stop();
    });
  }
});
