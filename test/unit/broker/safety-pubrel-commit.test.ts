// A failed PUBREL commit must not leave a stale inbound QoS 2 id (issue 8, finding 5). The id is
// forgotten only once its delete is committed: until then a retransmitted PUBREL still finds it (and
// deletes the row again), so after a restart the client's next QoS 2 PUBLISH with that id is routed.
// In-process engine on a store whose commits fail on demand; the restart loads a new broker from it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

const TOPIC = 'qos2/t';

async function publishQos2(c: EngineClient, messageId: number, payload: string): Promise<Extract<Packet, { cmd: 'pubrec' }>> {
  const from = c.packets.length;
  c.send({ cmd: 'publish', topic: TOPIC, payload: Buffer.from(payload), qos: 2, messageId, retain: false, dup: false });
  return await c.waitFor((p) => p.cmd === 'pubrec' && p.messageId === messageId, 'PUBREC', from) as Extract<Packet, { cmd: 'pubrec' }>;
}

async function pubrel(c: EngineClient, messageId: number): Promise<Extract<Packet, { cmd: 'pubcomp' }>> {
  const from = c.packets.length;
  c.send({ cmd: 'pubrel', messageId, reasonCode: 0 } as Packet);
  return await c.waitFor((p) => p.cmd === 'pubcomp' && p.messageId === messageId, 'PUBCOMP', from) as Extract<Packet, { cmd: 'pubcomp' }>;
}

for (const version of [4, 5] as const) {
  describe(`PUBREL whose commit fails (v${version === 5 ? '5' : '3.1.1'})`, () => {
    test('the retransmitted PUBREL deletes the id; after a restart the next QoS 2 PUBLISH with that id is routed', async () => {
      const store = new FaultyStore();
      const first = await startEngine(store);
      const sub = new EngineClient(first.broker, 5);
      await sub.connect('sub', { clean: true });
      await sub.subscribe(1, TOPIC, 0);
      const pub = new EngineClient(first.broker, version);
      await pub.connect('pub', { expirySec: 3600 });
      await publishQos2(pub, 7, 'first');
      await sub.waitFor((p) => p.cmd === 'publish', 'the first message');

      store.failWhen = (ops) => ops.includes('deleteInboundQos2');
      pub.send({ cmd: 'pubrel', messageId: 7, reasonCode: 0 } as Packet);
      await pub.whenClosed(); // no PUBCOMP for a release that was not stored
      assert.equal(pub.packets.some((p) => p.cmd === 'pubcomp'), false);
      assert.equal(store.failed, 1);
      store.failWhen = undefined;

      // The client resumes and sends PUBREL again, as it must until it gets PUBCOMP
      const again = new EngineClient(first.broker, version);
      assert.equal((await again.connect('pub', { expirySec: 3600 })).sessionPresent, true);
      const comp = await pubrel(again, 7);
      assert.equal(comp.reasonCode ?? 0, 0, 'the retransmitted PUBREL did not find the id');
      again.drop();
      await first.broker.shutdown();

      const second = await startEngine(store);
      const sub2 = new EngineClient(second.broker, 5);
      await sub2.connect('sub2', { clean: true });
      await sub2.subscribe(1, TOPIC, 0);
      const pub2 = new EngineClient(second.broker, version);
      assert.equal((await pub2.connect('pub', { expirySec: 3600 })).sessionPresent, true);
      await publishQos2(pub2, 7, 'second');
      const got = await sub2.waitFor((p) => p.cmd === 'publish', 'the second message');
      assert.equal(Buffer.from((got as Extract<Packet, { cmd: 'publish' }>).payload).toString(), 'second');
      await second.broker.shutdown();
    });

    test('a PUBREL retransmitted while the first one commits is answered with success too', async () => {
      const store = new FaultyStore();
      const { broker } = await startEngine(store);
      const pub = new EngineClient(broker, version);
      await pub.connect('pub', { expirySec: 3600 });
      await publishQos2(pub, 9, 'x');
      const from = pub.packets.length;
      pub.send({ cmd: 'pubrel', messageId: 9, reasonCode: 0 } as Packet);
      pub.send({ cmd: 'pubrel', messageId: 9, reasonCode: 0 } as Packet);
      await pub.waitFor(() => pub.packets.slice(from).filter((p) => p.cmd === 'pubcomp').length === 2, 'two PUBCOMPs', from);
      const comps = pub.packets.slice(from).filter((p) => p.cmd === 'pubcomp') as Array<Extract<Packet, { cmd: 'pubcomp' }>>;
      assert.deepEqual(comps.map((p) => p.reasonCode ?? 0), [0, 0]);
      assert.equal((await store.load()).inboundQos2.length, 0);
      // The id is free again: a new QoS 2 PUBLISH with it is a new message
      const sub = new EngineClient(broker, 5);
      await sub.connect('sub', { clean: true });
      await sub.subscribe(1, TOPIC, 0);
      await publishQos2(pub, 9, 'y');
      await sub.waitFor((p) => p.cmd === 'publish', 'the new message');
      await broker.shutdown();
    });
  });
}

/** A store whose commit of a QoS 2 id is applied but reported failed: the outcome a watchdog-abandoned commit can have. */
class UnknownOutcomeStore extends FaultyStore {
  unknownOutcome = true;
  override transaction(build: Parameters<FaultyStore['transaction']>[0]): Promise<void> {
    let hasQos2 = false;
    const applied = super.transaction((tx) => {
      build(new Proxy(tx, { get: (t, name: string) => { if (name === 'addInboundQos2') hasQos2 = true; return (t as unknown as Record<string, unknown>)[name]; } }));
    });
    if (!this.unknownOutcome || !hasQos2) return applied;
    return applied.then(() => { throw new Error('commit outcome unknown'); });
  }
}

describe('QoS 2 PUBLISH whose commit outcome is unknown (v5)', () => {
  test('the id refused with 0x83 is deleted from the store too: after a restart a new PUBLISH with it is routed', async () => {
    const store = new UnknownOutcomeStore();
    const first = await startEngine(store);
    const pub = new EngineClient(first.broker, 5);
    await pub.connect('pub', { expirySec: 3600 });
    const rec = await publishQos2(pub, 11, 'unknown');
    assert.equal(rec.reasonCode, 0x83);
    store.unknownOutcome = false;
    // The compensating delete is a unit of its own: wait until the store has no such id
    for (let i = 0; i < 100 && (await store.load()).inboundQos2.length > 0; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual((await store.load()).inboundQos2, [], 'the refused id stays stored');
    pub.drop();
    await first.broker.shutdown();

    const second = await startEngine(store);
    const sub = new EngineClient(second.broker, 5);
    await sub.connect('sub', { clean: true });
    await sub.subscribe(1, TOPIC, 0);
    const pub2 = new EngineClient(second.broker, 5);
    await pub2.connect('pub', { expirySec: 3600 });
    assert.equal((await publishQos2(pub2, 11, 'next')).reasonCode ?? 0, 0);
    const got = await sub.waitFor((p) => p.cmd === 'publish', 'the next message');
    assert.equal(Buffer.from((got as Extract<Packet, { cmd: 'publish' }>).payload).toString(), 'next');
    await second.broker.shutdown();
  });
});
