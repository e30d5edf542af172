// The broker facade's operations on behalf of the server (what the REST API will call): subscribe
// and unsubscribe a session, list sessions, disconnect a client. Driven through the engine harness.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

describe('broker facade', () => {
  test('subscribeSession routes to the session at once; unsubscribeSession stops it and is stored', async () => {
    const store = new FaultyStore();
    const { broker } = await startEngine(store);
    const c = new EngineClient(broker, 5);
    await c.connect('admin-target', { expirySec: 3600 });
    assert.equal(await broker.subscribeSession('default', 'admin-target', 'ops/#', 1), true);
    assert.equal(await broker.subscribeSession('default', 'nobody', 'ops/#', 1), false);
    await broker.publishFromServer({ hub: 'default', topicName: 'ops/a', payload: Buffer.from('one'), qos: 1 });
    const got = await c.waitFor((p) => p.cmd === 'publish', 'the first message') as Extract<Packet, { cmd: 'publish' }>;
    assert.equal(Buffer.from(got.payload).toString(), 'one');
    assert.equal((await store.load()).subscriptions.length, 1);

    assert.equal(await broker.unsubscribeSession('default', 'admin-target', 'ops/#'), true);
    assert.equal(await broker.unsubscribeSession('default', 'admin-target', 'ops/#'), false, 'already gone');
    assert.equal((await store.load()).subscriptions.length, 0);
    assert.equal(await broker.publishFromServer({ hub: 'default', topicName: 'ops/b', payload: Buffer.from('two'), qos: 1 }), 0);
    await broker.shutdown();
  });

  test('unsubscribeSession whose removal cannot be stored rejects and keeps the subscription', async () => {
    const store = new FaultyStore();
    const { broker } = await startEngine(store);
    const c = new EngineClient(broker, 5);
    await c.connect('keep', { expirySec: 3600 });
    await c.subscribe(1, 'k/#', 1);
    store.failWhen = (ops) => ops.includes('deleteSubscription');
    await assert.rejects(broker.unsubscribeSession('default', 'keep', 'k/#'));
    store.failWhen = undefined;
    assert.equal(await broker.publishFromServer({ hub: 'default', topicName: 'k/1', payload: Buffer.from('x'), qos: 0 }), 1, 'still routed');
    await broker.shutdown();
  });

  test('listSessions reports each session with its state; disconnectClient ends a connection', async () => {
    const { broker } = await startEngine(new FaultyStore());
    const a = new EngineClient(broker, 5);
    await a.connect('a', { expirySec: 60 });
    await a.subscribe(1, 'x', 1);
    const b = new EngineClient(broker, 4, 'other');
    await b.connect('b', { clean: true });
    const all = broker.listSessions({ limit: 100 }).items.map((s) => [s.hub, s.clientId, s.connected, s.persistent, s.subscriptions]);
    assert.deepEqual(all.sort(), [['default', 'a', true, true, 1], ['other', 'b', true, false, 0]]);
    assert.deepEqual(broker.listSessions({ hub: 'other', limit: 100 }).items.map((s) => s.clientId), ['b']);
    assert.deepEqual(broker.listSessions({ hub: 'none', limit: 100 }), { items: [], next: undefined });
    assert.equal(broker.disconnectClient('default', 'a'), true);
    const d = await a.waitFor((p) => p.cmd === 'disconnect', 'DISCONNECT') as Extract<Packet, { cmd: 'disconnect' }>;
    assert.equal(d.reasonCode, 0x98); // Administrative action
    await a.whenClosed();
    assert.equal(broker.listSessions({ hub: 'default', limit: 100 }).items[0]?.connected, false, 'the persistent session stays, disconnected');
    assert.equal(broker.disconnectClient('default', 'a'), false);
    await broker.shutdown();
  });
});
