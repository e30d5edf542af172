// The Store contract: every behaviour written once, run against every implementation
// (MemoryStore and PgStore).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src/mqtt/packet.ts';
import type {
  AuditEvent, DeliveryRecord, HubSettingsRecord, PermissionRecord, SessionRecord, Store, StoredAccess, SubscriptionRecord, UnitOfWork,
} from '../../src/store/store.ts';

export interface StoreFixture {
  store: Store;
  /** Audit rows of a hub, oldest first. */
  readAudit(hub: string): Promise<Array<Pick<AuditEvent, 'event' | 'clientId' | 'reasonCode'>>>;
  /** A second Store on the same data, as after a restart. */
  reopen(): Promise<Store>;
  close(): Promise<void>;
}

let seq = 1_000_000;
const nextId = (): number => ++seq;

function session(hub: string, clientId: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return { hub, clientId, protocolVersion: 5, expiryIntervalSec: 3600, connectedAtMs: 1000, disconnectedAtMs: null, nodeId: 'n1', userId: null, ...over };
}

function message(hub: string, topicName: string, over: Partial<Message> = {}): Message {
  return { id: nextId(), hub, topicName, payload: Buffer.from(`p-${topicName}`), qos: 1, retain: false, createdAtMs: 5000, ...over };
}

function delivery(hub: string, clientId: string, m: Message, over: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return { id: nextId(), hub, clientId, messageId: m.id, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 0, state: 'queued', ...over };
}

function sub(hub: string, clientId: string, topicFilter: string, over: Partial<SubscriptionRecord> = {}): SubscriptionRecord {
  return { hub, clientId, topicFilter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined, ...over };
}

/** Register the contract for one Store implementation. */
export function describeStoreContract(name: string, make: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${name}`, () => {
    let f: StoreFixture;
    let hubN = 0;
    const hub = (): string => `h${++hubN}-${process.pid}`;
    before(async () => { f = await make(); });
    after(async () => { await f.close(); });

    test('a session with subscriptions, deliveries, will and QoS 2 ids survives a reopen', async () => {
      const h = hub();
      const m = message(h, 'a/b', { properties: { correlationData: Buffer.from([1, 2, 3]), userProperties: { k: ['v1', 'v2'] }, contentType: 'text/plain' }, expiresAtMs: 99_000 });
      const d = delivery(h, 'c1', m, { subscriptionIds: [3, 7], shareKey: 'g/a/+', qos: 2, packetId: 12, state: 'sent' });
      await f.store.transaction((tx) => {
        tx.putSession(session(h, 'c1'));
        tx.putSubscription(sub(h, 'c1', 'a/+', { qos: 2, noLocal: true, subscriptionId: 3 }));
        tx.putSubscription(sub(h, 'c1', '$share/g/a/+', { retainHandling: 2 }));
        tx.insertMessage(m);
        tx.enqueueDeliveries([d]);
        tx.putWill({ hub: h, clientId: 'c1', message: message(h, 'will/c1', { retain: true }), delayIntervalSec: 5, messageExpiryIntervalSec: 60 });
        tx.addInboundQos2({ hub: h, clientId: 'c1', packetId: 44 });
      });
      const reopened = await f.reopen();
      const s = await reopened.load();
      assert.deepEqual(s.sessions.filter((x) => x.hub === h), [session(h, 'c1')]);
      const subs = s.subscriptions.filter((x) => x.hub === h).sort((a, b) => a.topicFilter.localeCompare(b.topicFilter));
      assert.deepEqual(subs, [sub(h, 'c1', '$share/g/a/+', { retainHandling: 2 }), sub(h, 'c1', 'a/+', { qos: 2, noLocal: true, subscriptionId: 3 })]);
      assert.deepEqual(s.deliveries.filter((x) => x.hub === h), [d]);
      const loaded = s.messages.find((x) => x.id === m.id);
      assert.ok(loaded, 'message referenced by a delivery is loaded');
      assert.deepEqual(loaded.payload, m.payload);
      assert.deepEqual(loaded.properties?.correlationData, Buffer.from([1, 2, 3]));
      assert.deepEqual(loaded.properties?.userProperties, { k: ['v1', 'v2'] });
      assert.equal(loaded.expiresAtMs, 99_000);
      const will = s.wills.find((w) => w.hub === h);
      assert.equal(will?.message.topicName, 'will/c1');
      assert.equal(will?.message.retain, true);
      assert.equal(will?.delayIntervalSec, 5);
      assert.equal(will?.messageExpiryIntervalSec, 60);
      assert.deepEqual(s.inboundQos2.filter((x) => x.hub === h), [{ hub: h, clientId: 'c1', packetId: 44 }]);
    });

    test('deleteSession removes subscriptions, deliveries, will and QoS 2 ids', async () => {
      const h = hub();
      const m = message(h, 't');
      await f.store.transaction((tx) => {
        tx.putSession(session(h, 'c'));
        tx.putSession(session(h, 'other'));
        tx.putSubscription(sub(h, 'c', 't'));
        tx.insertMessage(m);
        tx.enqueueDeliveries([delivery(h, 'c', m), delivery(h, 'other', m)]);
        tx.putWill({ hub: h, clientId: 'c', message: message(h, 'w'), delayIntervalSec: 0, messageExpiryIntervalSec: undefined });
        tx.addInboundQos2({ hub: h, clientId: 'c', packetId: 1 });
      });
      await f.store.transaction((tx) => tx.deleteSession(h, 'c'));
      const s = await f.store.load();
      assert.deepEqual(s.sessions.filter((x) => x.hub === h).map((x) => x.clientId), ['other']);
      assert.equal(s.subscriptions.filter((x) => x.hub === h).length, 0);
      assert.deepEqual(s.deliveries.filter((x) => x.hub === h).map((x) => x.clientId), ['other']);
      assert.equal(s.wills.filter((x) => x.hub === h).length, 0);
      assert.equal(s.inboundQos2.filter((x) => x.hub === h).length, 0);
    });

    test('delivery lifecycle: queued → sent → pubrec → deleted', async () => {
      const h = hub();
      const m = message(h, 't', { qos: 2 });
      const d = delivery(h, 'c', m, { qos: 2 });
      await f.store.transaction((tx) => { tx.putSession(session(h, 'c')); tx.insertMessage(m); tx.enqueueDeliveries([d]); });
      await f.store.transaction((tx) => tx.updateDelivery(d.id, 9, 'sent'));
      let s = await f.store.load();
      assert.deepEqual(s.deliveries.find((x) => x.id === d.id)?.state, 'sent');
      await f.store.transaction((tx) => tx.updateDelivery(d.id, 9, 'pubrec'));
      s = await f.store.load();
      assert.deepEqual(s.deliveries.find((x) => x.id === d.id), { ...d, packetId: 9, state: 'pubrec' });
      await f.store.transaction((tx) => tx.deleteDelivery(d.id));
      s = await f.store.load();
      assert.equal(s.deliveries.find((x) => x.id === d.id), undefined);
      assert.equal(s.messages.find((x) => x.id === m.id), undefined, 'an unreferenced message is not loaded');
    });

    test('deliveries acknowledged out of order come back as they were left after a reopen, each message once', async () => {
      const h = hub();
      const ms = [1, 2, 3].map((i) => message(h, `o/${i}`, { qos: 2, retain: i === 3, publisherId: `p${i}`, expiresAtMs: 50_000 + i }));
      const ds = ms.map((m, i) => delivery(h, 'c', m, { qos: 2, packetId: i + 1, state: 'sent' }));
      // one message to two sessions in the same unit
      const shared = message(h, 'o/shared');
      const toC = delivery(h, 'c', shared);
      const toD = delivery(h, 'd', shared);
      await f.store.transaction((tx) => { tx.putSession(session(h, 'c')); tx.putSession(session(h, 'd')); });
      await Promise.all(ms.map((m, i) => f.store.transaction((tx) => { tx.insertMessage(m); tx.enqueueDeliveries([ds[i]!]); })));
      await f.store.transaction((tx) => { tx.insertMessage(shared); tx.enqueueDeliveries([toC, toD]); });
      // the second acknowledged before the first, the third half-way (PUBREC), one copy of the shared message acknowledged
      await f.store.transaction((tx) => { tx.deleteDelivery(ds[1]!.id); tx.updateDelivery(ds[2]!.id, 3, 'pubrec'); tx.deleteDelivery(toD.id); });
      const s = await (await f.reopen()).load();
      assert.deepEqual(s.deliveries.filter((x) => x.hub === h), [ds[0], { ...ds[2]!, state: 'pubrec' }, toC]);
      const loaded = s.messages.filter((x) => x.hub === h).sort((a, b) => a.id - b.id);
      assert.deepEqual(loaded.map((x) => x.id), [ms[0]!.id, ms[2]!.id, shared.id]);
      for (const m of [ms[0]!, ms[2]!, shared]) {
        const x = loaded.find((y) => y.id === m.id)!;
        // (fields left undefined may be missing or present as undefined)
        const plain = (y: Message): object => Object.fromEntries(Object.entries({ ...y, payload: y.payload.toString() }).filter(([, v]) => v !== undefined));
        assert.deepEqual(plain(x), plain(m), `message ${m.topicName}`);
      }
    });

    test('a message given to another session in a later unit outlives the acknowledgement of its first delivery', async () => {
      const h = hub();
      const m = message(h, 'handoff', { properties: { contentType: 'a/b' } });
      const first = delivery(h, 'c', m, { shareKey: 'g/handoff' });
      const second = delivery(h, 'd', m, { shareKey: 'g/handoff' });
      await f.store.transaction((tx) => { tx.putSession(session(h, 'c')); tx.putSession(session(h, 'd')); tx.insertMessage(m); tx.enqueueDeliveries([first]); });
      // (a shared-subscription handoff stores the message again with the new delivery)
      await f.store.transaction((tx) => { tx.insertMessage(m); tx.enqueueDeliveries([second]); });
      await f.store.transaction((tx) => tx.deleteDelivery(first.id));
      const s = await (await f.reopen()).load();
      assert.deepEqual(s.deliveries.filter((x) => x.hub === h), [second]);
      const loaded = s.messages.filter((x) => x.hub === h);
      assert.equal(loaded.length, 1);
      assert.deepEqual(loaded[0]!.payload, m.payload);
      assert.equal(loaded[0]!.properties?.contentType, 'a/b');
    });

    test('units of work submitted together commit in order and resolve in order', async () => {
      const h = hub();
      const m = message(h, 't');
      const d = delivery(h, 'c', m);
      const order: number[] = [];
      await Promise.all([
        f.store.transaction((tx) => { tx.putSession(session(h, 'c')); tx.putSubscription(sub(h, 'c', 'x')); }).then(() => order.push(1)),
        f.store.transaction((tx) => { tx.insertMessage(m); tx.enqueueDeliveries([d]); }).then(() => order.push(2)),
        f.store.transaction((tx) => tx.updateDelivery(d.id, 3, 'sent')).then(() => order.push(3)),
        f.store.transaction((tx) => tx.deleteSubscription(h, 'c', 'x')).then(() => order.push(4)),
        f.store.transaction((tx) => { tx.addInboundQos2({ hub: h, clientId: 'c', packetId: 5 }); tx.deleteInboundQos2(h, 'c', 5); tx.addInboundQos2({ hub: h, clientId: 'c', packetId: 5 }); }).then(() => order.push(5)),
      ]);
      assert.deepEqual(order, [1, 2, 3, 4, 5]);
      const s = await f.store.load();
      assert.equal(s.subscriptions.filter((x) => x.hub === h).length, 0);
      assert.deepEqual(s.deliveries.filter((x) => x.hub === h), [{ ...d, packetId: 3, state: 'sent' }]);
      assert.deepEqual(s.inboundQos2.filter((x) => x.hub === h).map((x) => x.packetId), [5]);
    });

    test('a delivery enqueued and deleted in one batch leaves nothing; a session deleted then re-created starts empty', async () => {
      const h = hub();
      const m = message(h, 't');
      const d = delivery(h, 'c', m);
      await f.store.transaction((tx) => { tx.putSession(session(h, 'c')); tx.putSubscription(sub(h, 'c', 'old')); });
      await Promise.all([
        f.store.transaction((tx) => { tx.insertMessage(m); tx.enqueueDeliveries([d]); }),
        f.store.transaction((tx) => tx.deleteDelivery(d.id)),
        f.store.transaction((tx) => { tx.deleteSession(h, 'c'); tx.putSession(session(h, 'c', { expiryIntervalSec: 7 })); tx.putSubscription(sub(h, 'c', 'new')); }),
      ]);
      const s = await f.store.load();
      assert.equal(s.deliveries.filter((x) => x.hub === h).length, 0);
      assert.deepEqual(s.sessions.filter((x) => x.hub === h).map((x) => x.expiryIntervalSec), [7]);
      assert.deepEqual(s.subscriptions.filter((x) => x.hub === h).map((x) => x.topicFilter), ['new']);
    });

    test('retained messages: put, replace, delete', async () => {
      const h = hub();
      await f.store.transaction((tx) => { tx.putRetained(message(h, 'r/1', { retain: true })); tx.putRetained(message(h, 'r/2', { retain: true, qos: 2 })); });
      await f.store.transaction((tx) => tx.putRetained(message(h, 'r/1', { retain: true, payload: Buffer.from('new') })));
      await f.store.transaction((tx) => tx.deleteRetained(h, 'r/2'));
      const s = await f.store.load();
      const r = s.retained.filter((x) => x.hub === h);
      assert.equal(r.length, 1);
      assert.equal(r[0]!.topicName, 'r/1');
      assert.equal(r[0]!.payload.toString(), 'new');
      assert.equal(r[0]!.retain, true);
    });

    test('retained messages only, in one commit: puts and clearings together, properties with quotes and backslashes, absent columns', async () => {
      const h = hub();
      await f.store.transaction((tx) => { tx.putRetained(message(h, 'x/gone', { retain: true })); tx.putRetained(message(h, 'x/kept', { retain: true })); });
      const awkward = { contentType: 'text/"quoted" \\ back\\slash', userProperties: { 'k"1': ['v\\1', '"v2"'] }, responseTopic: 'a/"b"' };
      const units = [
        (tx: UnitOfWork) => tx.putRetained(message(h, 'x/"odd" \\ name', { retain: true, properties: awkward, expiresAtMs: 77_000, publisherId: 'p"1' })),
        (tx: UnitOfWork) => tx.deleteRetained(h, 'x/gone'),
        (tx: UnitOfWork) => tx.putRetained(message(h, 'x/plain', { retain: true, qos: 0, payload: Buffer.from('p'), expiresAtMs: undefined, publisherId: undefined })),
        (tx: UnitOfWork) => tx.putRetained(message(h, 'x/kept', { retain: true, payload: Buffer.from([0, 255, 1]) })),
      ];
      await Promise.all(units.map((u) => f.store.transaction(u))); // (submitted together: one commit on PostgreSQL)
      const s = await f.store.load();
      const r = new Map(s.retained.filter((x) => x.hub === h).map((x) => [x.topicName, x]));
      assert.deepEqual([...r.keys()].sort(), ['x/"odd" \\ name', 'x/kept', 'x/plain']);
      const odd = r.get('x/"odd" \\ name')!;
      assert.deepEqual(odd.properties, awkward);
      assert.equal(odd.expiresAtMs, 77_000);
      assert.equal(odd.publisherId, 'p"1');
      const plain = r.get('x/plain')!;
      assert.equal(plain.qos, 0);
      assert.equal(plain.payload.toString(), 'p');
      assert.equal(plain.expiresAtMs, undefined);
      assert.equal(plain.publisherId, undefined);
      assert.deepEqual(r.get('x/kept')!.payload, Buffer.from([0, 255, 1]));
    });

    test('session updates replace the stored record', async () => {
      const h = hub();
      await f.store.transaction((tx) => tx.putSession(session(h, 'c')));
      await f.store.transaction((tx) => tx.putSession(session(h, 'c', { connectedAtMs: null, disconnectedAtMs: 4242, expiryIntervalSec: 0xffffffff, userId: 'alice' })));
      const s = await f.store.load();
      assert.deepEqual(s.sessions.filter((x) => x.hub === h), [session(h, 'c', { connectedAtMs: null, disconnectedAtMs: 4242, expiryIntervalSec: 0xffffffff, userId: 'alice' })]);
    });

    test('audit events are appended through units of work', async () => {
      const h = hub();
      await f.store.transaction((tx) => {
        tx.appendAudit({ hub: h, event: 'connect', clientId: 'c', atMs: 1_700_000_000_000, detail: { method: 'anonymous' } });
        tx.appendAudit({ hub: h, event: 'connect_refused', clientId: 'd', reasonCode: 0x87, atMs: 1_700_000_000_001 });
      });
      assert.deepEqual(await f.readAudit(h), [
        { event: 'connect', clientId: 'c', reasonCode: undefined },
        { event: 'connect_refused', clientId: 'd', reasonCode: 0x87 },
      ]);
    });

    test('queryAudit: newest first, filtered by hub, client, actor, event and time, paged by id', async () => {
      const h = hub();
      const t0 = 1_800_000_000_000;
      await f.store.transaction((tx) => {
        for (let i = 0; i < 5; i++) {
          tx.appendAudit({ hub: h, event: i % 2 === 0 ? 'admin_action' : 'connect', clientId: `c${i}`, actor: i < 3 ? 'key:primary' : 'u', atMs: t0 + i * 1000, detail: { i } });
        }
      });
      await f.store.transaction((tx) => tx.appendAudit({ hub: `${h}-other`, event: 'admin_action', atMs: t0 }));
      const all = await f.store.queryAudit({ hub: h, limit: 100 });
      assert.deepEqual(all.rows.map((r) => r.clientId), ['c4', 'c3', 'c2', 'c1', 'c0']);
      assert.equal(all.nextCursor, undefined);
      assert.deepEqual(all.rows[0], { id: all.rows[0]!.id, hub: h, event: 'admin_action', clientId: 'c4', actor: 'u', atMs: t0 + 4000, detail: { i: 4 } });
      const seen: string[] = [];
      let cursor: number | undefined;
      do {
        const page = await f.store.queryAudit({ hub: h, limit: 2, ...(cursor === undefined ? {} : { beforeId: cursor }) });
        assert.ok(page.rows.length <= 2);
        seen.push(...page.rows.map((r) => r.clientId!));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      assert.deepEqual(seen, ['c4', 'c3', 'c2', 'c1', 'c0']);
      assert.deepEqual((await f.store.queryAudit({ hub: h, event: 'admin_action', actor: 'key:primary', limit: 10 })).rows.map((r) => r.clientId), ['c2', 'c0']);
      assert.deepEqual((await f.store.queryAudit({ hub: h, clientId: 'c3', limit: 10 })).rows.map((r) => r.event), ['connect']);
      assert.deepEqual((await f.store.queryAudit({ hub: h, fromMs: t0 + 1000, toMs: t0 + 3000, limit: 10 })).rows.map((r) => r.clientId), ['c2', 'c1']);
      assert.deepEqual((await f.store.queryAudit({ hub: 'no-such-hub', limit: 10 })).rows, []);
    });

    test('grants are stored once, revoked one by one or all together, and survive a reopen', async () => {
      const h = hub();
      const grant = (subject: string, permission: string, target: string | null): PermissionRecord => ({
        hub: h, subjectKind: 'connection', subject, permission, target, grantedBy: 'primary', grantedAtMs: 1_700_000_000_000,
      });
      await f.store.transaction((tx) => {
        tx.grantPermission(grant('c1', 'sendToGroup', 'a/b'));
        tx.grantPermission(grant('c1', 'sendToGroup', 'a/b')); // the same grant twice: one row
        tx.grantPermission(grant('c1', 'sendToGroup', null));
        tx.grantPermission(grant('c1', 'joinLeaveGroup', 'x'));
        tx.grantPermission(grant('c2', 'joinLeaveGroup', null));
      });
      const mine = (a: StoredAccess) => a.permissions.filter((p) => p.hub === h)
        .map((p) => `${p.subject} ${p.permission} ${p.target ?? '*'} ${p.grantedBy}`).sort();
      assert.deepEqual(mine(await f.store.loadAccess()), ['c1 joinLeaveGroup x primary', 'c1 sendToGroup * primary', 'c1 sendToGroup a/b primary', 'c2 joinLeaveGroup * primary']);
      await f.store.transaction((tx) => {
        tx.revokePermission(h, 'connection', 'c1', 'sendToGroup', null); // only the all-groups grant
        tx.revokeAllPermissions(h, 'connection', 'c2');
      });
      assert.deepEqual(mine(await f.store.loadAccess()), ['c1 joinLeaveGroup x primary', 'c1 sendToGroup a/b primary']);
      const again = await f.reopen();
      assert.deepEqual(mine(await again.loadAccess()), ['c1 joinLeaveGroup x primary', 'c1 sendToGroup a/b primary']);
    });

    test('hub settings are replaced as a whole', async () => {
      const h = hub();
      const settings = (over: Partial<HubSettingsRecord>): HubSettingsRecord => ({
        hub: h, anonymousConnectPolicy: null, maxKeepAliveSec: null, maxSessions: null, updatedAtMs: 1_700_000_000_000, ...over,
      });
      await f.store.transaction((tx) => tx.putHubSettings(settings({ anonymousConnectPolicy: 'deny', maxSessions: 10 })));
      await f.store.transaction((tx) => tx.putHubSettings(settings({ anonymousConnectPolicy: 'allow', maxKeepAliveSec: 60 })));
      const got = (await f.store.loadAccess()).hubSettings.filter((x) => x.hub === h);
      assert.deepEqual(got, [settings({ anonymousConnectPolicy: 'allow', maxKeepAliveSec: 60 })]);
    });
  });
}
