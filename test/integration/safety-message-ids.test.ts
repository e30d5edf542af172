// Message and delivery ids must stay unique when the wall clock goes back. They used to be
// Date.now() * 1000 at start-up, raised only above the ids of rows loaded at start: a message row
// whose deliveries were all acknowledged is not loaded (it waits for garbage collection), so a
// broker restarted with its clock at or behind the earlier instant reused its id, and PostgreSQL
// kept the old row (ON CONFLICT DO NOTHING): a session then received the old payload.
// Both brokers here run with Date.now() frozen at the same instant (test/fixtures/frozen-clock.mjs).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { repoRoot, startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const frozenClock = {
  NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import=${path.join(repoRoot, 'test/fixtures/frozen-clock.mjs')}`.trim(),
  TERN_TEST_FROZEN_NOW_MS: String(Date.now()),
};

async function publish(peer: RawPeer, topic: string, payload: string, messageId: number): Promise<number> {
  const ack = peer.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, `PUBACK ${payload}`);
  peer.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, messageId });
  return ((await ack) as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0;
}

describe('message ids after the clock went back', { concurrency: false }, () => {
  let db: TestDatabase | undefined;
  const brokers: BrokerProcess[] = [];
  const peers: RawPeer[] = [];
  after(async () => {
    for (const p of peers) p.destroy();
    for (const b of brokers) await b.kill();
    await db?.drop();
  });

  test('a broker whose clock is not ahead of the stored ids does not reuse them', async () => {
    db = await createTestDatabase();
    const topic = `ids/${uniqueId('t')}`;
    const subId = uniqueId('ids-sub');
    const connectSub = async (broker: BrokerProcess, onPublish: (p: IPublishPacket) => void, autoAck: boolean): Promise<RawPeer> => {
      const sub = await RawPeer.open(broker, 'tcp', 5);
      peers.push(sub);
      sub.on((p) => {
        if (p.cmd !== 'publish') return;
        onPublish(p);
        if (autoAck) sub.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
      });
      assert.equal(connackCode(await sub.connect({ clientId: subId, clean: false, properties: { sessionExpiryInterval: 3600 } })), 0);
      return sub;
    };

    // First broker: 'first' is delivered to the persistent session and acknowledged after its rows
    // were committed (an earlier acknowledgement cancels them in the batch); its message row stays
    // behind without deliveries
    const a = await startBroker(['--database-url', db.url], frozenClock);
    brokers.push(a);
    const gotA: string[] = [];
    const subA = await connectSub(a, (p) => gotA.push(Buffer.from(p.payload).toString()), false);
    const suback = subA.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    subA.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;
    const pubA = await RawPeer.open(a, 'tcp', 5);
    peers.push(pubA);
    assert.equal(connackCode(await pubA.connect({ clientId: uniqueId('ids-pub'), clean: true })), 0);
    const delivered = subA.waitFor((p) => p.cmd === 'publish', '"first" at the subscriber');
    assert.equal(await publish(pubA, topic, 'first', 1), 0); // committed
    const first = (await delivered) as IPublishPacket;
    subA.sendPacket({ cmd: 'puback', messageId: first.messageId ?? 0, reasonCode: 0 });
    subA.sendPacket({ cmd: 'disconnect', reasonCode: 0 });
    await subA.closed();
    pubA.destroy();
    assert.equal(await a.stop(), 0);

    // Second broker, same instant on its clock: 'second' is stored for the offline session
    const b = await startBroker(['--database-url', db.url], frozenClock);
    brokers.push(b);
    const pubB = await RawPeer.open(b, 'tcp', 5);
    peers.push(pubB);
    assert.equal(connackCode(await pubB.connect({ clientId: uniqueId('ids-pub'), clean: true })), 0);
    assert.equal(await publish(pubB, topic, 'second', 1), 0);
    pubB.destroy();
    assert.equal(await b.stop(), 0);

    // Third broker: the session gets what is stored for it
    const c = await startBroker(['--database-url', db.url], frozenClock);
    brokers.push(c);
    const gotB: string[] = [];
    const subB = await connectSub(c, (p) => gotB.push(Buffer.from(p.payload).toString()), true);
    const deadline = Date.now() + 10_000;
    while (gotB.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    subB.destroy();
    assert.deepEqual(gotA, ['first']);
    assert.deepEqual(gotB, ['second'], 'the queued message is the one published, not an older one with the same id');
  });
});
