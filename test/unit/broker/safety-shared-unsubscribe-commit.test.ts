// Memory and store agree whatever a commit's outcome (issue 8, finding 6): a failed commit of a
// shared-subscription redistribution leaves the deliveries with the session that had them (where
// their rows still are), and a failed UNSUBSCRIBE commit restores the routing and tells the client
// (5.0: UNSUBACK 0x83 Implementation specific error; 3.1.1: the connection is closed).
// In-process engine on a store whose commits fail on demand; a restart loads a new broker from it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

type Publish = Extract<Packet, { cmd: 'publish' }>;
const text = (p: Publish): string => Buffer.from(p.payload).toString();

async function publishQos1(c: EngineClient, messageId: number, topic: string, payload: string): Promise<void> {
  const from = c.packets.length;
  c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup: false });
  await c.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, 'PUBACK', from);
}

/** Resolve once `done()` holds (checked every turn of the event loop), or reject after `timeoutMs`. */
async function until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('shared-subscription redistribution whose commit fails', () => {
  test('the deliveries stay with the member that left, and reach it when it comes back', async () => {
    const store = new FaultyStore();
    const { broker } = await startEngine(store);
    const a = new EngineClient(broker, 5);
    await a.connect('member-a', { expirySec: 3600, receiveMaximum: 1 }); // a window of one: later ones queue
    await a.subscribe(1, '$share/g/shared/t', 1);
    const b = new EngineClient(broker, 5);
    await b.connect('member-b', { expirySec: 3600, receiveMaximum: 1 });
    await b.subscribe(1, '$share/g/shared/t', 1);
    const pub = new EngineClient(broker, 5);
    await pub.connect('publisher', { clean: true });
    // Both windows full: the group alternates, and each member holds one in flight and the rest queued
    const all = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'];
    for (const [i, m] of all.entries()) await publishQos1(pub, i + 1, 'shared/t', m);
    assert.deepEqual(a.publishes.map(text), ['m1']);
    assert.deepEqual(b.publishes.map(text), ['m2']);
    // B takes what it has and anything moved to it from now on
    b.autoAck = true;
    b.send({ cmd: 'puback', messageId: b.publishes[0]!.messageId!, reasonCode: 0 } as Packet);
    await b.waitFor(() => b.publishes.length === 3, 'B drains its own queue');
    const bBefore = b.publishes.map(text);
    const toA = all.filter((m) => !bBefore.includes(m));
    assert.deepEqual(toA, ['m1', 'm3', 'm5'], 'A holds one delivery in flight and two queued');
    store.failWhen = (ops) => ops.includes('deleteDelivery') && ops.includes('enqueueDeliveries');
    a.drop(); // A leaves: its deliveries go to B, but that commit fails
    await until(() => store.failed > 0, 'the move to be refused');
    store.failWhen = undefined;
    const stored = await store.load();
    assert.equal(stored.deliveries.filter((d) => d.clientId === 'member-a').length, toA.length, 'the rows stay with A');

    const back = new EngineClient(broker, 5);
    assert.equal((await back.connect('member-a', { expirySec: 3600 })).sessionPresent, true);
    for (let i = 0; i < toA.length; i++) {
      const p = await back.waitFor((x) => x.cmd === 'publish' && !back.publishes.slice(0, i).includes(x as Publish), `delivery ${i + 1} of ${toA.length}`) as Publish;
      back.send({ cmd: 'puback', messageId: p.messageId!, reasonCode: 0 } as Packet);
    }
    assert.deepEqual(back.publishes.map(text).sort(), [...toA].sort(), 'A did not get back what its rows hold');
    assert.deepEqual(b.publishes.map(text), bBefore, 'B got deliveries whose move was not stored');
    await broker.shutdown();
  });
});

for (const version of [4, 5] as const) {
  describe(`UNSUBSCRIBE whose commit fails (v${version === 5 ? '5' : '3.1.1'})`, () => {
    test(version === 5
      ? 'UNSUBACK 0x83, and the subscription still routes, before and after a restart'
      : 'the connection is closed, and the subscription still routes, before and after a restart', async () => {
      const store = new FaultyStore();
      const first = await startEngine(store);
      const c = new EngineClient(first.broker, version);
      await c.connect('unsub', { expirySec: 3600 });
      await c.subscribe(1, 'unsub/t', 1);
      store.failWhen = (ops) => ops.includes('deleteSubscription');
      const from = c.packets.length;
      c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['unsub/t'] });
      if (version === 5) {
        const ack = await c.waitFor((p) => p.cmd === 'unsuback', 'UNSUBACK', from) as Extract<Packet, { cmd: 'unsuback' }>;
        assert.deepEqual(ack.granted, [0x83]);
      } else {
        await c.whenClosed();
        assert.equal(c.packets.slice(from).some((p) => p.cmd === 'unsuback'), false, 'UNSUBACK for an unsubscribe that was not stored');
      }
      store.failWhen = undefined;
      const pub = new EngineClient(first.broker, 5);
      await pub.connect('pub', { clean: true });

      const live = version === 5 ? c : new EngineClient(first.broker, version);
      if (live !== c) assert.equal((await live.connect('unsub', { expirySec: 3600 })).sessionPresent, true);
      await publishQos1(pub, 1, 'unsub/t', 'still-subscribed');
      const got = await live.waitFor((p) => p.cmd === 'publish', 'the message on the subscription still stored') as Publish;
      assert.equal(text(got), 'still-subscribed');
      live.send({ cmd: 'puback', messageId: got.messageId!, reasonCode: 0 } as Packet);
      live.drop();
      await first.broker.shutdown();

      const second = await startEngine(store);
      const again = new EngineClient(second.broker, version);
      assert.equal((await again.connect('unsub', { expirySec: 3600 })).sessionPresent, true);
      const pub2 = new EngineClient(second.broker, 5);
      await pub2.connect('pub', { clean: true });
      await publishQos1(pub2, 1, 'unsub/t', 'after-restart');
      assert.equal(text(await again.waitFor((p) => p.cmd === 'publish', 'the message after the restart') as Publish), 'after-restart');
      await second.broker.shutdown();
    });
  });
}
