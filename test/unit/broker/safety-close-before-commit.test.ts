// A client that goes away while its CONNECT or SUBSCRIBE is being committed: the session opened for
// it still ends (or waits for its expiry) like any disconnected session, and a subscription whose
// commit failed is taken out of routing even though nobody is left to tell.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, HeldStore, startEngine } from '../../helpers/engine.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';

const settle = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

describe('a client gone before its commit settles', () => {
  test('CONNECT: the stored session expires on time instead of staying for ever', async () => {
    const clock = new FakeClock();
    const store = new HeldStore();
    const { broker } = await startEngine(store, {}, clock);
    const c = new EngineClient(broker, 5);
    store.holding = true;
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'early', properties: { sessionExpiryInterval: 60 } } as Packet);
    await settle();
    assert.equal(store.heldCount, 1, 'the session commit is in flight');
    c.drop();
    await settle();
    store.release();
    await settle();
    assert.equal(c.packets.length, 0, 'nothing is sent to a closed connection');
    assert.equal((await store.load()).sessions.length, 1, 'the session was stored');
    await settle();
    assert.deepEqual(store.inner.auditEvents.filter((e) => e.clientId === 'early').map((e) => e.event), ['disconnect'], 'audited as a disconnect by the network');
    clock.advance(60_000);
    await settle();
    assert.equal((await store.load()).sessions.length, 0, 'the session never expired');
    assert.equal(broker.findHub('default')?.sessions.has('early') ?? false, false);
    await broker.shutdown();
  });

  test('SUBSCRIBE: a subscription whose commit failed after its client left does not route', async () => {
    const store = new HeldStore();
    const { broker } = await startEngine(store);
    const sub = new EngineClient(broker, 5);
    await sub.connect('sub', { expirySec: 3600 });
    store.holding = true;
    store.failWhen = (ops) => ops.includes('putSubscription');
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'gone/t', qos: 1 }], properties: {} } as Packet);
    await settle();
    sub.drop();
    await settle();
    store.release();
    await settle();
    store.failWhen = undefined;
    const hub = broker.findHub('default')!;
    const session = hub.sessions.get('sub');
    assert.ok(session, 'the persistent session stays');
    assert.equal(session.subscriptions.size, 0, 'the subscription that was never stored is still routed');
    await broker.shutdown();
  });

  test('SUBSCRIBE again: a failed commit after the session ended puts nothing of it back (routing, group index)', async () => {
    const store = new HeldStore();
    const { broker } = await startEngine(store);
    const old = new EngineClient(broker, 5);
    await old.connect('same', { expirySec: 3600 });
    await old.subscribe(1, 'room', 1);
    store.holding = true;
    store.failWhen = (ops) => ops.includes('putSubscription');
    // The same filter again: replaces the stored subscription, its commit held and then failed
    old.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'room', qos: 0 }], properties: {} } as Packet);
    await settle();
    // A clean start with the same client id ends that session at once (the delete of its row is
    // committed behind the held subscribe, whose failure comes first); the new session joins the group
    const next = new EngineClient(broker, 5);
    const connected = next.connect('same', { clean: true });
    await settle();
    store.release();
    await connected;
    store.failWhen = undefined;
    await next.subscribe(1, 'room', 1);
    const hub = broker.findHub('default')!;
    assert.deepEqual(broker.groupPage('default', 'room', undefined, 10).members.map((m) => m.clientId), ['same']);
    assert.equal(hub.tree.size, 1, 'only the new session routes room');
    assert.equal(await broker.unsubscribeSession('default', 'same', 'room'), true);
    assert.equal(broker.hasGroup('default', 'room'), false, 'the ended session came back as a member of the group');
    assert.equal(hub.tree.size, 0);
    await broker.shutdown();
  });
});
