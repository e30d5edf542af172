// Hub: an isolated namespace of sessions, subscriptions and retained messages. Owns the
// subscription trie and shared groups; knows nothing about sockets or the store. Hubs: the
// registry of hubs by case-insensitive name.
import { RetainedTree, TopicTree } from '../mqtt/topic-tree.ts';
import type { Message } from '../mqtt/packet.ts';
import { compareStrings, SortedMap } from '../mqtt/sorted-map.ts';
import { hasWildcard } from '../mqtt/topic.ts';
import type { Session, SessionHub, SharedGroup, Subscription } from './session.ts';

/** What the subscription trie holds: a session's own subscription or a shared group. */
export type RouteEntry = Subscription | SharedGroup;

/** What a retained message counts against the hub's retained bytes: its payload. */
function retainedBytes(m: Message): number {
  return m.payload.length;
}

/** A group member as its index orders it: by group (the exact topic subscribed), then client id. */
interface MemberKey {
  readonly key: string;
  readonly session: { readonly clientId: string };
}

function compareMembers(a: MemberKey, b: MemberKey): number {
  return compareStrings(a.key, b.key) || compareStrings(a.session.clientId, b.session.clientId);
}

/** A subscription that makes its session a member of a Web PubSub group: an exact topic, not shared. */
function isGroupMembership(sub: Subscription): boolean {
  return sub.shareName === undefined && !hasWildcard(sub.key);
}

/**
 * One hub: its sessions, subscription trie, shared groups and retained messages, and the ordered
 * indexes the REST listings page through (sessions by client id, sessions by user, group members),
 * kept by the only code that adds and removes sessions and subscriptions.
 */
export class Hub implements SessionHub {
  readonly name: string;
  readonly #sessions = new Map<string, Session>();
  readonly #sessionOrder = new SortedMap<string, Session>(undefined, compareStrings);
  readonly #byUser = new Map<string, Set<Session>>();
  readonly #members = new SortedMap<MemberKey, Subscription>(undefined, compareMembers);
  readonly tree = new TopicTree<RouteEntry>();
  readonly sharedGroups = new Map<string, SharedGroup>();
  readonly retained = new RetainedTree<Message>(retainedBytes);
  /** Retained messages routed but not yet committed (counted against the caps as new topics). */
  retainedPendingCount = 0;
  retainedPendingBytes = 0;
  /** Session opens whose commit is in flight, by client id (the per-client-id lock). */
  readonly opening = new Map<string, Promise<void>>();

  constructor(name: string) {
    this.name = name;
  }

  /** The hub's sessions by client id (changed only through putSession and removeSession). */
  get sessions(): ReadonlyMap<string, Session> {
    return this.#sessions;
  }

  /** Register `session` under its client id (replacing any other session registered there, with its subscriptions). */
  putSession(session: Session): void {
    const previous = this.#sessions.get(session.clientId);
    if (previous === session) return;
    if (previous) {
      this.removeAllSubscriptions(previous);
      this.removeSession(previous);
    }
    this.#sessions.set(session.clientId, session);
    this.#sessionOrder.set(session.clientId, session);
    this.#indexUser(session);
  }

  /** Unregister `session`; false if it is not the session registered under its client id. */
  removeSession(session: Session): boolean {
    if (this.#sessions.get(session.clientId) !== session) return false;
    this.#sessions.delete(session.clientId);
    this.#sessionOrder.delete(session.clientId);
    this.#unindexUser(session);
    return true;
  }

  /** Set the user a session belongs to (the index of users' sessions follows). */
  setUser(session: Session, userId: string | undefined): void {
    if (session.userId === userId) return;
    const registered = this.#sessions.get(session.clientId) === session;
    if (registered) this.#unindexUser(session);
    session.userId = userId;
    if (registered) this.#indexUser(session);
  }

  /** Sessions with client ids after `after` (all when undefined), in client id order, from `from` on when given. */
  *sessionsAfter(after: string | undefined, from?: string): IterableIterator<Session> {
    const start = after !== undefined && (from === undefined || after >= from) ? after : from;
    for (const [id, s] of this.#sessionOrder.entries(start)) {
      if (after !== undefined && id <= after) continue;
      yield s;
    }
  }

  /** The sessions of a user (none: an empty iterable). */
  sessionsOfUser(userId: string): ReadonlySet<Session> {
    return this.#byUser.get(userId) ?? EMPTY;
  }

  /** Members of group `group` (sessions subscribed to exactly that topic) with client ids after `after`, in client id order. */
  *groupMembers(group: string, after?: string): IterableIterator<Session> {
    const from: MemberKey = { key: group, session: { clientId: after ?? '' } };
    for (const [k] of this.#members.entries(from)) {
      if (k.key !== group) return;
      if (after !== undefined && k.session.clientId === after) continue;
      yield k.session as Session;
    }
  }

  /** Whether any session is a member of `group`. */
  hasGroupMembers(group: string): boolean {
    const next = this.#members.getPairOrNextHigher({ key: group, session: { clientId: '' } });
    return next !== undefined && next[0].key === group;
  }

  #indexUser(s: Session): void {
    if (s.userId === undefined) return;
    let set = this.#byUser.get(s.userId);
    if (!set) {
      set = new Set();
      this.#byUser.set(s.userId, set);
    }
    set.add(s);
  }

  #unindexUser(s: Session): void {
    if (s.userId === undefined) return;
    const set = this.#byUser.get(s.userId);
    if (!set) return;
    set.delete(s);
    if (set.size === 0) this.#byUser.delete(s.userId);
  }

  /** Put a subscription into routing; replaces one with the same key. Returns the replaced one. */
  addSubscription(sub: Subscription): Subscription | undefined {
    const previous = sub.session.subscriptions.get(sub.key);
    if (previous) this.removeSubscription(previous);
    sub.session.subscriptions.set(sub.key, sub);
    if (isGroupMembership(sub)) this.#members.set(sub, sub);
    if (sub.shareName === undefined) {
      this.tree.add(sub.topicFilter, sub);
      return previous;
    }
    const groupKey = `${sub.shareName}/${sub.topicFilter}`;
    let group = this.sharedGroups.get(groupKey);
    if (!group) {
      group = { kind: 'shared', key: groupKey, shareName: sub.shareName, topicFilter: sub.topicFilter, members: [], next: 0 };
      this.sharedGroups.set(groupKey, group);
      this.tree.add(sub.topicFilter, group);
    }
    group.members.push(sub);
    return previous;
  }

  /** Take a subscription out of routing. */
  removeSubscription(sub: Subscription): void {
    if (sub.session.subscriptions.get(sub.key) === sub) sub.session.subscriptions.delete(sub.key);
    if (isGroupMembership(sub) && this.#members.get(sub) === sub) this.#members.delete(sub);
    if (sub.shareName === undefined) {
      this.tree.remove(sub.topicFilter, sub);
      return;
    }
    const groupKey = `${sub.shareName}/${sub.topicFilter}`;
    const group = this.sharedGroups.get(groupKey);
    if (!group) return;
    const i = group.members.indexOf(sub);
    if (i >= 0) group.members.splice(i, 1);
    if (group.members.length === 0) {
      this.sharedGroups.delete(groupKey);
      this.tree.remove(sub.topicFilter, group);
    }
  }

  /**
   * Would storing a retained message of `payloadBytes` at `topicName` go over the hub's caps?
   * A replacement counts only its difference; a delete (empty payload) never does.
   */
  retainedOverQuota(topicName: string, payloadBytes: number, maxMessages: number, maxBytes: number): boolean {
    if (payloadBytes === 0) return false;
    const existing = this.retained.get(topicName);
    // Retained messages still being committed count too, or pipelined publishes would all pass
    const count = this.retained.size + this.retainedPendingCount + (existing ? 0 : 1);
    const bytes = this.retained.bytes + this.retainedPendingBytes - (existing ? existing.payload.length : 0) + payloadBytes;
    return count > maxMessages || bytes > maxBytes;
  }

  /** Remove every subscription of a session from routing. */
  removeAllSubscriptions(session: Session): void {
    for (const sub of [...session.subscriptions.values()]) this.removeSubscription(sub);
  }
}

const EMPTY: ReadonlySet<Session> = new Set();

/** The hubs of this node by key (hub names are case-insensitive). */
export class Hubs {
  readonly #byKey = new Map<string, Hub>();

  /** The hubs by key. */
  get byKey(): ReadonlyMap<string, Hub> {
    return this.#byKey;
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** The key of the hub called `name`; creates nothing. */
  key(name: string): string {
    return name.toLowerCase();
  }

  /** The hub called `name` if it exists. */
  find(name: string): Hub | undefined {
    return this.#byKey.get(name.toLowerCase());
  }

  /** The hub called `name`, created on first use. */
  get(name: string): Hub {
    const key = name.toLowerCase();
    let hub = this.#byKey.get(key);
    if (!hub) {
      hub = new Hub(key);
      this.#byKey.set(key, hub);
    }
    return hub;
  }

  /** Forget a hub (one a refused CONNECT created and nothing uses). */
  delete(hub: Hub): void {
    if (this.#byKey.get(hub.name) === hub) this.#byKey.delete(hub.name);
  }

  /** Forget a hub that holds nothing: no session, subscription, retained message (stored or being committed) or session being opened. */
  forgetIfEmpty(hub: Hub): void {
    if (hub.sessions.size > 0 || hub.tree.size > 0 || hub.retained.size > 0 || hub.opening.size > 0 || hub.retainedPendingCount > 0) return;
    this.delete(hub);
  }

  /** Sessions in every hub. */
  get sessionCount(): number {
    let n = 0;
    for (const hub of this.#byKey.values()) n += hub.sessions.size;
    return n;
  }

  values(): IterableIterator<Hub> {
    return this.#byKey.values();
  }
}
