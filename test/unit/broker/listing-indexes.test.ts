// The ordered indexes a hub keeps for REST listings (sessions by client id, sessions by user,
// group members, retained topic names) and the pages walked through them: each page starts at its
// cursor by a seek, filtered walks stop within their scan budget, and every entry is listed once
// across the pages, whatever changes in between.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Hub } from '../../../src/broker/hub.ts';
import { retainedPage, sessionPage, type Page, type SessionSummary } from '../../../src/broker/admin-views.ts';
import type { OutboxServices } from '../../../src/broker/outbox.ts';
import type { SessionLink } from '../../../src/broker/session-link.ts';
import { Session, type Subscription } from '../../../src/broker/session.ts';
import type { Message } from '../../../src/mqtt/packet.ts';

function session(hub: Hub, clientId: string, o: { userId?: string; connected?: boolean; persistent?: boolean } = {}): Session {
  const s = new Session(hub, clientId, 5, {} as OutboxServices);
  hub.putSession(s);
  if (o.userId !== undefined) hub.setUser(s, o.userId);
  if (o.connected) s.attach({} as SessionLink);
  s.persistent = o.persistent ?? false;
  return s;
}

function subscribe(hub: Hub, s: Session, key: string): Subscription {
  const share = key.startsWith('$share/') ? key.split('/') : undefined;
  const sub: Subscription = {
    kind: 'subscription', session: s, key, topicFilter: share ? share.slice(2).join('/') : key, shareName: share?.[1], qos: 1, noLocal: false,
    retainAsPublished: false, retainHandling: 0, subscriptionId: undefined,
  };
  hub.addSubscription(sub);
  return sub;
}

const ids = (it: Iterable<Session>): string[] => [...it].map((s) => s.clientId);

/** Follow a listing's cursors to the end; returns every item and the number of pages. */
function walk<T, C>(first: (after: C | undefined) => Page<T, C>): { items: T[]; pages: number } {
  const items: T[] = [];
  let pages = 0;
  let after: C | undefined;
  for (;;) {
    const p = first(after);
    pages++;
    items.push(...p.items);
    if (p.next === undefined) return { items, pages };
    assert.ok(pages < 10_000, 'the cursors must move forward');
    after = p.next;
  }
}

describe('group members', () => {
  test('a group is the sessions subscribed to exactly its topic, in client id order; wildcard and shared subscriptions are not members', () => {
    const hub = new Hub('h');
    const [c, a, b, d] = ['c', 'a', 'b', 'd'].map((id) => session(hub, id));
    subscribe(hub, c!, 'room/1');
    subscribe(hub, a!, 'room/1');
    subscribe(hub, b!, 'room/+');
    subscribe(hub, b!, '$share/g/room/1');
    subscribe(hub, d!, 'room/1/x');
    subscribe(hub, d!, 'room/10');
    assert.deepEqual(ids(hub.groupMembers('room/1')), ['a', 'c']);
    assert.deepEqual(ids(hub.groupMembers('room/1', 'a')), ['c'], 'after a cursor');
    assert.deepEqual(ids(hub.groupMembers('room/1', 'b')), ['c'], 'a cursor that is not a member');
    assert.deepEqual(ids(hub.groupMembers('room/10')), ['d']);
    assert.equal(hub.hasGroupMembers('room/1'), true);
    assert.equal(hub.hasGroupMembers('room/+'), false);
    assert.equal(hub.hasGroupMembers('room'), false);
    assert.equal(hub.hasGroupMembers('room/1/x'), true);
  });

  test('unsubscribing, replacing a subscription and ending a session keep the index exact', () => {
    const hub = new Hub('h');
    const a = session(hub, 'a');
    const b = session(hub, 'b');
    const first = subscribe(hub, a, 'g');
    subscribe(hub, b, 'g');
    subscribe(hub, a, 'g'); // the same filter again replaces the subscription
    assert.deepEqual(ids(hub.groupMembers('g')), ['a', 'b']);
    hub.removeSubscription(first); // the replaced one: no longer in routing or in the index
    assert.deepEqual(ids(hub.groupMembers('g')), ['a', 'b']);
    hub.removeSubscription(a.subscriptions.get('g')!);
    assert.deepEqual(ids(hub.groupMembers('g')), ['b']);
    hub.removeAllSubscriptions(b);
    hub.removeSession(b);
    assert.equal(hub.hasGroupMembers('g'), false);
    assert.deepEqual(ids(hub.sessionsAfter(undefined)), ['a']);
  });
});

describe('sessions by client id and by user', () => {
  test('a user index follows the user a session belongs to, and a replaced session leaves both indexes', () => {
    const hub = new Hub('h');
    const a = session(hub, 'a', { userId: 'u1' });
    session(hub, 'b', { userId: 'u1' });
    assert.deepEqual(ids(hub.sessionsOfUser('u1')).sort(), ['a', 'b']);
    hub.setUser(a, 'u2');
    assert.deepEqual(ids(hub.sessionsOfUser('u1')), ['b']);
    assert.deepEqual(ids(hub.sessionsOfUser('u2')), ['a']);
    subscribe(hub, a, 'room');
    const a2 = session(hub, 'a', { userId: 'u3' }); // the same client id: replaces the session, its subscriptions go with it
    assert.equal(hub.sessions.get('a'), a2);
    assert.deepEqual(ids(hub.sessionsOfUser('u2')), []);
    assert.deepEqual(ids(hub.sessionsOfUser('u3')), ['a']);
    assert.equal(hub.removeSession(a), false, 'the replaced session is no longer registered');
    assert.equal(hub.tree.size, 0);
    assert.equal(hub.hasGroupMembers('room'), false);
    assert.deepEqual(ids(hub.sessionsAfter(undefined)), ['a', 'b']);
    hub.setUser(a2, undefined);
    assert.deepEqual(ids(hub.sessionsOfUser('u3')), []);
  });

  test('sessionsAfter seeks to a cursor and to a prefix', () => {
    const hub = new Hub('h');
    for (const id of ['dev-2', 'app-1', 'dev-1', 'dev-10', 'zz', 'dev']) session(hub, id);
    assert.deepEqual(ids(hub.sessionsAfter(undefined)), ['app-1', 'dev', 'dev-1', 'dev-10', 'dev-2', 'zz']);
    assert.deepEqual(ids(hub.sessionsAfter('dev-1')), ['dev-10', 'dev-2', 'zz']);
    assert.deepEqual(ids(hub.sessionsAfter(undefined, 'dev-')), ['dev-1', 'dev-10', 'dev-2', 'zz']);
    assert.deepEqual(ids(hub.sessionsAfter('dev-10', 'dev-')), ['dev-2', 'zz']);
    assert.deepEqual(ids(hub.sessionsAfter('a', 'dev-')), ['dev-1', 'dev-10', 'dev-2', 'zz'], 'a cursor before the prefix starts at the prefix');
  });
});

describe('session pages', () => {
  const hubs = (): Hub[] => {
    const h1 = new Hub('b-hub');
    const h2 = new Hub('a-hub');
    for (let i = 0; i < 50; i++) {
      session(h1, `c${String(i).padStart(3, '0')}`, { connected: i % 10 === 0, persistent: i % 2 === 0, userId: i % 7 === 0 ? 'seven' : undefined });
      session(h2, `c${String(i).padStart(3, '0')}`, { connected: false, userId: i === 3 ? 'seven' : undefined });
    }
    return [h1, h2];
  };
  const key = (s: SessionSummary): string => `${s.hub}/${s.clientId}`;

  test('pages in (hub, client id) order list every session once', () => {
    const hs = hubs();
    const all = walk<SessionSummary, [string, string]>((after) => sessionPage(hs, { limit: 7, ...(after ? { after } : {}) }));
    assert.equal(all.items.length, 100);
    assert.deepEqual(all.items.map(key), all.items.map(key).sort());
    assert.equal(new Set(all.items.map(key)).size, 100);
    assert.equal(all.items[0]!.hub, 'a-hub');
  });

  test('a page that fills at the end of a hub goes on at the start of the next one', () => {
    const hs = hubs();
    for (const limit of [10, 25, 50]) {
      const all = walk<SessionSummary, [string, string]>((after) => sessionPage(hs, { limit, ...(after ? { after } : {}) }));
      assert.equal(new Set(all.items.map(key)).size, 100, `limit ${limit}`);
    }
    const seven = walk<SessionSummary, [string, string]>((after) => sessionPage(hs, { limit: 1, userId: 'seven', ...(after ? { after } : {}) }));
    assert.equal(seven.items.length, 9);
  });

  test('a filter on state that matches little is walked within the scan budget: short pages with a cursor, nothing missed', () => {
    const hs = hubs();
    const connected = walk<SessionSummary, [string, string]>((after) => sessionPage(hs, { limit: 100, connected: true, ...(after ? { after } : {}) }, 8));
    assert.deepEqual(connected.items.map(key), ['b-hub/c000', 'b-hub/c010', 'b-hub/c020', 'b-hub/c030', 'b-hub/c040']);
    assert.ok(connected.pages >= Math.floor(100 / 8), `the budget cut the walk into pages (${connected.pages})`);
    const persistentConnected = walk<SessionSummary, [string, string]>((after) => sessionPage([hs[0]!], { limit: 2, connected: true, persistent: true, ...(after ? { after } : {}) }, 5));
    assert.deepEqual(persistentConnected.items.map((s) => s.clientId), ['c000', 'c010', 'c020', 'c030', 'c040']);
  });

  test('a user filter and a client id prefix', () => {
    const hs = hubs();
    const seven = walk<SessionSummary, [string, string]>((after) => sessionPage(hs, { limit: 3, userId: 'seven', ...(after ? { after } : {}) }));
    assert.deepEqual(seven.items.map(key), ['a-hub/c003', ...[0, 7, 14, 21, 28, 35, 42, 49].map((i) => `b-hub/c${String(i).padStart(3, '0')}`)]);
    const prefixed = walk<SessionSummary, [string, string]>((after) => sessionPage([hs[1]!], { limit: 4, clientIdPrefix: 'c01', ...(after ? { after } : {}) }));
    assert.deepEqual(prefixed.items.map((s) => s.clientId), ['c010', 'c011', 'c012', 'c013', 'c014', 'c015', 'c016', 'c017', 'c018', 'c019']);
    assert.deepEqual(sessionPage(hs, { limit: 10, clientIdPrefix: 'nobody' }), { items: [], next: undefined });
  });

  test('sessions added and removed between pages: those before the cursor are not listed again, the rest are', () => {
    const [h1] = hubs();
    const first = sessionPage([h1!], { limit: 10 });
    assert.equal(first.items.at(-1)!.clientId, 'c009');
    session(h1!, 'c005x'); // before the cursor: missed by this walk, as in any keyset paging
    session(h1!, 'c0095'); // after it
    h1!.removeSession(h1!.sessions.get('c010')!);
    const second = sessionPage([h1!], { limit: 3, after: first.next! });
    assert.deepEqual(second.items.map((s) => s.clientId), ['c0095', 'c011', 'c012']);
  });
});

describe('retained pages', () => {
  const message = (topicName: string, expiresAtMs?: number): Message => ({
    id: 1, hub: 'h', topicName, payload: Buffer.from(topicName), qos: 0, retain: true, properties: undefined, createdAtMs: 0, expiresAtMs,
  });
  const retained = (topics: string[]): Hub => {
    const hub = new Hub('h');
    for (const t of topics) hub.retained.set(t, message(t, t.endsWith('expired') ? 5 : undefined));
    return hub;
  };
  const topicsOf = (hub: Hub, filter: string, limit: number, budget?: number): string[] =>
    walk<{ topic: string }, string>((after) => retainedPage(hub, filter, after, limit, 10, budget)).items.map((m) => m.topic);

  test('a filter walks from its literal levels, in topic order, within the budget; expired messages are left out', () => {
    const hub = retained(['a/b', 'a', 'a/b/c', 'a/bc', 'b/x', '$SYS/x', 'a/expired', 'a/c/d', 'ab']);
    assert.deepEqual(topicsOf(hub, '#', 2), ['a', 'a/b', 'a/b/c', 'a/bc', 'a/c/d', 'ab', 'b/x'], '# leaves out $ topics [MQTT-4.7.2-1]');
    assert.deepEqual(topicsOf(hub, 'a/#', 2), ['a', 'a/b', 'a/b/c', 'a/bc', 'a/c/d']);
    assert.deepEqual(topicsOf(hub, 'a/b/#', 1, 1), ['a/b', 'a/b/c']);
    assert.deepEqual(topicsOf(hub, 'a/+', 10, 2), ['a/b', 'a/bc']);
    assert.deepEqual(topicsOf(hub, '+/x', 10, 3), ['b/x']);
    assert.deepEqual(topicsOf(hub, '$SYS/#', 10), ['$SYS/x']);
    assert.deepEqual(topicsOf(hub, 'a/b', 10), ['a/b']);
    assert.deepEqual(topicsOf(hub, 'a/expired', 10), [], 'an expired message at an exact topic');
    assert.deepEqual(retainedPage(hub, 'a/b', 'a/b', 10, 10).items, [], 'after its own topic');
  });

  test('a deleted retained message leaves the name index', () => {
    const hub = retained(['x/1', 'x/2', 'x/3']);
    hub.retained.delete('x/2');
    hub.retained.set('x/3', message('x/3')); // a replacement: listed once
    assert.deepEqual(topicsOf(hub, 'x/+', 10), ['x/1', 'x/3']);
    assert.deepEqual([...hub.retained.namesAfter('x/1')], ['x/3']);
  });
});
