// MemoryStore: units of work apply in order, group commit per tick, load() returns what a node
// needs at start-up, deleteSession cascades, and unreferenced messages are not loaded.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../../src/mqtt/packet.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';
import type {
  DeliveryRecord, InboundQos2Record, SessionRecord, StoredState, SubscriptionRecord, WillRecord,
} from '../../../src/store/store.ts';

const HUB = 'hub';

function message(id: number, overrides: Partial<Message> = {}): Message {
  return { id, hub: HUB, topicName: `t/${id}`, payload: Buffer.from(`m${id}`), qos: 1, retain: false, createdAtMs: 1000 + id, ...overrides };
}

function session(clientId: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    hub: HUB, clientId, protocolVersion: 5, expiryIntervalSec: 3600, connectedAtMs: 1, disconnectedAtMs: null, nodeId: 'node-1',
    ...overrides,
  };
}

function subscription(clientId: string, topicFilter: string, overrides: Partial<SubscriptionRecord> = {}): SubscriptionRecord {
  return {
    hub: HUB, clientId, topicFilter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined,
    ...overrides,
  };
}

function delivery(id: number, clientId: string, messageId: number, overrides: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return {
    id, hub: HUB, clientId, messageId, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 0, state: 'queued',
    ...overrides,
  };
}

function will(clientId: string): WillRecord {
  return { hub: HUB, clientId, message: message(900, { topicName: `will/${clientId}` }), delayIntervalSec: 0, messageExpiryIntervalSec: undefined };
}

const byId = <T extends { id: number }>(xs: T[]): T[] => [...xs].sort((a, b) => a.id - b.id);
const clientIds = (xs: Array<{ clientId: string }>): string[] => xs.map((x) => x.clientId).sort();

async function opened(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  return store;
}

describe('MemoryStore', () => {
  test('an empty store loads empty state', async () => {
    const store = await opened();
    const empty: StoredState = { sessions: [], subscriptions: [], messages: [], deliveries: [], retained: [], wills: [], inboundQos2: [] };
    assert.deepEqual(await store.load(), empty);
    assert.equal(store.kind, 'memory');
  });

  test('operations within a unit of work apply in call order', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.putSession(session('a', { nodeId: 'first' }));
      tx.putSession(session('a', { nodeId: 'second' }));
      tx.putSession(session('b'));
      tx.deleteSession(HUB, 'b');
      tx.deleteSession(HUB, 'c');
      tx.putSession(session('c'));
      tx.putRetained(message(1, { topicName: 'r', retain: true }));
      tx.deleteRetained(HUB, 'r');
      tx.deleteRetained(HUB, 's');
      tx.putRetained(message(2, { topicName: 's', retain: true }));
    });
    const state = await store.load();
    assert.deepEqual(state.sessions.map((s) => [s.clientId, s.nodeId]).sort(), [['a', 'second'], ['c', 'node-1']]);
    assert.deepEqual(state.retained.map((m) => m.topicName), ['s']);
  });

  test('units of work apply in submission order', async () => {
    const store = await opened();
    const p1 = store.transaction((tx) => tx.putRetained(message(1, { topicName: 'r', retain: true })));
    const p2 = store.transaction((tx) => tx.deleteRetained(HUB, 'r'));
    const p3 = store.transaction((tx) => tx.putSubscription(subscription('a', 'x/#', { qos: 0 })));
    const p4 = store.transaction((tx) => tx.putSubscription(subscription('a', 'x/#', { qos: 2 })));
    await Promise.all([p1, p2, p3, p4]);
    const state = await store.load();
    assert.deepEqual(state.retained, []);
    assert.deepEqual(state.subscriptions.map((s) => [s.topicFilter, s.qos]), [['x/#', 2]]);
  });

  test('nothing is visible before the commit; the build function runs synchronously', async () => {
    const store = await opened();
    let built = false;
    const p = store.transaction((tx) => { built = true; tx.putSession(session('a')); });
    assert.equal(built, true);
    assert.equal(store.commits, 0);
    await p;
    assert.equal(store.commits, 1);
    assert.equal((await store.load()).sessions.length, 1);
  });

  test('transactions submitted in one tick share one commit and resolve in order', async () => {
    const store = await opened();
    const resolved: number[] = [];
    const all = Array.from({ length: 5 }, (_, i) =>
      store.transaction((tx) => tx.putSession(session(`c${i}`))).then(() => { resolved.push(i); }));
    await Promise.all(all);
    assert.equal(store.commits, 1);
    assert.deepEqual(resolved, [0, 1, 2, 3, 4]);
    await store.transaction((tx) => tx.deleteSession(HUB, 'c0'));
    assert.equal(store.commits, 2, 'a later tick commits again');
    assert.equal((await store.load()).sessions.length, 4);
  });

  test('load() returns sessions, subscriptions, deliveries, messages, retained, wills and inbound QoS 2 ids', async () => {
    const store = await opened();
    const retained = message(10, { topicName: 'ret', retain: true });
    const q2: InboundQos2Record[] = [{ hub: HUB, clientId: 'a', packetId: 7 }, { hub: HUB, clientId: 'a', packetId: 8 }];
    await store.transaction((tx) => {
      tx.putSession(session('a'));
      tx.putSession(session('b', { protocolVersion: 4, connectedAtMs: null, disconnectedAtMs: 5 }));
      tx.putSubscription(subscription('a', 'x/+', { subscriptionId: 3 }));
      tx.putSubscription(subscription('b', '$share/g/y', { qos: 2, noLocal: false, retainHandling: 2 }));
      tx.insertMessage(message(1));
      tx.insertMessage(message(2, { qos: 2, properties: { contentType: 'text/plain' } }));
      tx.enqueueDeliveries([delivery(100, 'a', 1, { subscriptionIds: [3] }), delivery(101, 'b', 2, { qos: 2, shareKey: 'g/y' })]);
      tx.updateDelivery(100, 42, 'sent');
      tx.putRetained(retained);
      tx.putWill(will('a'));
      for (const r of q2) tx.addInboundQos2(r);
    });
    const state = await store.load();
    assert.deepEqual(state.sessions.sort((x, y) => x.clientId.localeCompare(y.clientId)), [
      session('a'),
      session('b', { protocolVersion: 4, connectedAtMs: null, disconnectedAtMs: 5 }),
    ]);
    assert.deepEqual(state.subscriptions.sort((x, y) => x.clientId.localeCompare(y.clientId)), [
      subscription('a', 'x/+', { subscriptionId: 3 }),
      subscription('b', '$share/g/y', { qos: 2, retainHandling: 2 }),
    ]);
    assert.deepEqual(byId(state.messages), [message(1), message(2, { qos: 2, properties: { contentType: 'text/plain' } })]);
    assert.deepEqual(byId(state.deliveries), [
      delivery(100, 'a', 1, { subscriptionIds: [3], packetId: 42, state: 'sent' }),
      delivery(101, 'b', 2, { qos: 2, shareKey: 'g/y' }),
    ]);
    assert.deepEqual(state.retained, [retained]);
    assert.deepEqual(state.wills, [will('a')]);
    assert.deepEqual(state.inboundQos2.sort((x, y) => x.packetId - y.packetId), q2);
  });

  test('load() returns copies: mutating them does not change the store', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.putSession(session('a'));
      tx.insertMessage(message(1));
      tx.enqueueDeliveries([delivery(100, 'a', 1, { subscriptionIds: [1] })]);
    });
    const first = await store.load();
    first.sessions[0]!.nodeId = 'changed';
    first.deliveries[0]!.subscriptionIds.push(99);
    first.deliveries[0]!.state = 'pubrec';
    const second = await store.load();
    assert.equal(second.sessions[0]!.nodeId, 'node-1');
    assert.deepEqual(second.deliveries[0]!.subscriptionIds, [1]);
    assert.equal(second.deliveries[0]!.state, 'queued');
  });

  test('insertMessage and enqueueDeliveries are idempotent', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.insertMessage(message(1));
      tx.insertMessage(message(1, { topicName: 'other' }));
      tx.enqueueDeliveries([delivery(100, 'a', 1)]);
      tx.enqueueDeliveries([delivery(100, 'a', 1, { qos: 2 })]);
    });
    let state = await store.load();
    assert.deepEqual(state.messages, [message(1)]);
    assert.deepEqual(state.deliveries, [delivery(100, 'a', 1)]);
    // the duplicate enqueue did not add a second reference: one delete frees the message
    await store.transaction((tx) => tx.deleteDelivery(100));
    state = await store.load();
    assert.deepEqual(state.deliveries, []);
    assert.deepEqual(state.messages, []);
  });

  test('subscriptions are keyed by (hub, clientId, topicFilter)', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.putSubscription(subscription('a', 'x'));
      tx.putSubscription(subscription('a', 'y'));
      tx.putSubscription({ ...subscription('a', 'x'), hub: 'other' });
      tx.deleteSubscription(HUB, 'a', 'y');
      tx.deleteSubscription(HUB, 'nobody', 'y');
    });
    const subs = (await store.load()).subscriptions.map((s) => `${s.hub}:${s.clientId}:${s.topicFilter}`).sort();
    assert.deepEqual(subs, ['hub:a:x', 'other:a:x']);
  });

  test('deleteWill and deleteInboundQos2 remove only their record', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.putWill(will('a'));
      tx.putWill(will('b'));
      tx.addInboundQos2({ hub: HUB, clientId: 'a', packetId: 1 });
      tx.addInboundQos2({ hub: HUB, clientId: 'a', packetId: 1 });
      tx.addInboundQos2({ hub: HUB, clientId: 'a', packetId: 2 });
    });
    await store.transaction((tx) => {
      tx.deleteWill(HUB, 'a');
      tx.deleteInboundQos2(HUB, 'a', 1);
    });
    const state = await store.load();
    assert.deepEqual(clientIds(state.wills), ['b']);
    assert.deepEqual(state.inboundQos2, [{ hub: HUB, clientId: 'a', packetId: 2 }]);
  });

  test('deleteSession cascades to subscriptions, deliveries, will and inbound QoS 2 ids of that session only', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      for (const c of ['a', 'b']) {
        tx.putSession(session(c));
        tx.putSubscription(subscription(c, 'x/#'));
        tx.putWill(will(c));
        tx.addInboundQos2({ hub: HUB, clientId: c, packetId: 1 });
      }
      tx.putSession({ ...session('a'), hub: 'other' }); // same clientId, other hub
      tx.insertMessage(message(1)); // for a and b
      tx.insertMessage(message(2)); // for a only
      tx.enqueueDeliveries([delivery(100, 'a', 1), delivery(101, 'b', 1), delivery(102, 'a', 2)]);
    });
    await store.transaction((tx) => tx.deleteSession(HUB, 'a'));
    const state = await store.load();
    assert.deepEqual(state.sessions.map((s) => `${s.hub}:${s.clientId}`).sort(), ['hub:b', 'other:a']);
    assert.deepEqual(clientIds(state.subscriptions), ['b']);
    assert.deepEqual(clientIds(state.wills), ['b']);
    assert.deepEqual(clientIds(state.inboundQos2), ['b']);
    assert.deepEqual(byId(state.deliveries).map((d) => d.id), [101]);
    assert.deepEqual(byId(state.messages).map((m) => m.id), [1], 'message 2 lost its only reference');
  });

  test('a message no delivery references is not returned by load()', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.insertMessage(message(1)); // never referenced
      tx.insertMessage(message(2));
      tx.enqueueDeliveries([delivery(100, 'a', 2), delivery(101, 'b', 2)]);
      tx.putRetained(message(3, { topicName: 'ret', retain: true }));
    });
    let state = await store.load();
    assert.deepEqual(state.messages.map((m) => m.id), [2]);
    assert.deepEqual(state.retained.map((m) => m.id), [3], 'retained messages are loaded separately');

    await store.transaction((tx) => tx.deleteDelivery(100));
    state = await store.load();
    assert.deepEqual(state.messages.map((m) => m.id), [2], 'still referenced by delivery 101');

    await store.transaction((tx) => tx.deleteDelivery(101));
    state = await store.load();
    assert.deepEqual(state.messages, []);
    assert.deepEqual(state.retained.map((m) => m.id), [3], 'retained copy unaffected');
  });

  test('updateDelivery and deleteDelivery of an unknown id are no-ops', async () => {
    const store = await opened();
    await store.transaction((tx) => {
      tx.insertMessage(message(1));
      tx.enqueueDeliveries([delivery(100, 'a', 1)]);
      tx.updateDelivery(999, 1, 'sent');
      tx.deleteDelivery(999);
    });
    const state = await store.load();
    assert.deepEqual(state.deliveries, [delivery(100, 'a', 1)]);
    assert.deepEqual(state.messages, [message(1)]);
  });
});
