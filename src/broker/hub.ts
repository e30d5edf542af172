// Hub: an isolated namespace of sessions, subscriptions and retained messages. Owns the
// subscription trie and shared groups; knows nothing about sockets or the store. Hubs: the
// registry of hubs by case-insensitive name.
import { RetainedTree, TopicTree } from '../mqtt/topic-tree.ts';
import type { Message } from '../mqtt/packet.ts';
import type { Session, SessionHub, SharedGroup, Subscription } from './session.ts';

/** What the subscription trie holds: a session's own subscription or a shared group. */
export type RouteEntry = Subscription | SharedGroup;

/** What a retained message counts against the hub's retained bytes: its payload. */
function retainedBytes(m: Message): number {
  return m.payload.length;
}

/** One hub: its sessions, subscription trie, shared groups and retained messages. */
export class Hub implements SessionHub {
  readonly name: string;
  readonly sessions = new Map<string, Session>();
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

  /** Put a subscription into routing; replaces one with the same key. Returns the replaced one. */
  addSubscription(sub: Subscription): Subscription | undefined {
    const previous = sub.session.subscriptions.get(sub.key);
    if (previous) this.removeSubscription(previous);
    sub.session.subscriptions.set(sub.key, sub);
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
