// What the admin API sees of sessions, retained messages and the engine's totals: plain objects
// built from engine state (no live references escape). Pure reads; nothing here changes state.
import type { Message, ProtocolVersion, QoS } from '../mqtt/packet.ts';
import { compareStrings } from '../mqtt/sorted-map.ts';
import { hasWildcard, literalPrefix, matchTopic } from '../mqtt/topic.ts';
import type { Hub } from './hub.ts';
import type { Session } from './session.ts';

/**
 * Most entries one listing request examines. A filtered listing (sessions by state, retained
 * messages by a wildcard filter) walks its index from the cursor and stops after this many: the
 * page may then hold fewer items than asked, with a cursor to go on from. A request never holds
 * the event loop for longer than this bounded walk, however large the hub.
 */
export const SCAN_BUDGET = 10_000;

/** One page of a listing: its items and, when there may be more, the cursor after them. */
export interface Page<T, C> {
  items: T[];
  next: C | undefined;
}

/** A session as the admin API lists it. */
export interface SessionSummary {
  hub: string;
  clientId: string;
  userId: string | undefined;
  connected: boolean;
  persistent: boolean;
  expiryIntervalSec: number;
  subscriptions: number;
  queued: number;
  inflight: number;
}

/** Which sessions a listing wants; `after` is the cursor ([hub, client id]) of the previous page. */
export interface SessionQuery {
  hub?: string;
  userId?: string;
  connected?: boolean;
  persistent?: boolean;
  clientIdPrefix?: string;
  after?: readonly [string, string];
  limit: number;
}

/** A session's subscription with its options. */
export interface SubscriptionDetail {
  filter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** A session's will, without its payload. */
export interface WillDetail {
  topic: string;
  qos: QoS;
  retain: boolean;
  delaySec: number;
  payloadBytes: number;
}

/** One session as the admin API details it. */
export interface SessionDetail {
  hub: string;
  clientId: string;
  userId: string | undefined;
  connected: boolean;
  persistent: boolean;
  protocolVersion: ProtocolVersion;
  expiryIntervalSec: number;
  /** While connected: when its connection opened (or resumed) it, and the peer's address. */
  connectedAtMs: number | undefined;
  remoteAddress: string | undefined;
  /** While disconnected: when its connection ended. */
  disconnectedAtMs: number | undefined;
  subscriptions: SubscriptionDetail[];
  queued: { count: number; bytes: number };
  inflight: { count: number; bytes: number };
  will: WillDetail | undefined;
}

/** A retained message as the admin API lists it. */
export interface RetainedView {
  topic: string;
  qos: QoS;
  payloadBytes: number;
  payload: Buffer;
  contentType: string | undefined;
  expiresAtMs: number | undefined;
}

/** Totals across hubs (admin stats). */
export interface EngineTotals {
  hubs: number;
  sessions: { total: number; connected: number; persistent: number };
  subscriptions: number;
  queued: { count: number; bytes: number };
  inflight: number;
  retained: { count: number; bytes: number };
}

/** The detail of one session. */
export function sessionDetail(hub: Hub, s: Session): SessionDetail {
  let inflightBytes = 0;
  for (const d of s.outbox.inflight.values()) inflightBytes += d.message.payload.length;
  const link = s.link;
  const w = s.will;
  return {
    hub: hub.name, clientId: s.clientId, userId: s.userId, connected: link !== undefined, persistent: s.persistent,
    protocolVersion: s.protocolVersion, expiryIntervalSec: s.expiryIntervalSec,
    connectedAtMs: link ? s.connectedAtMs : undefined, remoteAddress: link?.remoteAddress,
    disconnectedAtMs: link ? undefined : s.disconnectedAtMs,
    subscriptions: [...s.subscriptions.values()].map((sub) => ({
      filter: sub.key, qos: sub.qos, noLocal: sub.noLocal, retainAsPublished: sub.retainAsPublished, retainHandling: sub.retainHandling,
      subscriptionId: sub.subscriptionId,
    })).sort((a, b) => (a.filter < b.filter ? -1 : a.filter > b.filter ? 1 : 0)),
    queued: { count: s.outbox.queuedCount, bytes: s.outbox.queuedBytes },
    inflight: { count: s.outbox.inflightCount, bytes: inflightBytes },
    will: w && { topic: w.message.topicName, qos: w.message.qos, retain: w.message.retain, delaySec: w.delayIntervalSec, payloadBytes: w.message.payload.length },
  };
}

/** A retained message, unless it has expired by `nowMs`. */
export function retainedView(m: Message, nowMs: number): RetainedView | undefined {
  if (m.expiresAtMs !== undefined && m.expiresAtMs <= nowMs) return undefined;
  return {
    topic: m.topicName, qos: m.qos, payloadBytes: m.payload.length, payload: m.payload, contentType: m.properties?.contentType,
    expiresAtMs: m.expiresAtMs,
  };
}

function summary(hub: Hub, s: Session): SessionSummary {
  return {
    hub: hub.name, clientId: s.clientId, userId: s.userId, connected: s.isConnected, persistent: s.persistent, expiryIntervalSec: s.expiryIntervalSec,
    subscriptions: s.subscriptions.size, queued: s.outbox.queuedCount, inflight: s.outbox.inflightCount,
  };
}

/**
 * A page of sessions in (hub, client id) order. A user's sessions come from the user index, a
 * client id prefix seeks to its range; the state filters are tested while walking, within
 * SCAN_BUDGET entries.
 */
export function sessionPage(hubs: readonly Hub[], q: SessionQuery, budget = SCAN_BUDGET): Page<SessionSummary, [string, string]> {
  const items: SessionSummary[] = [];
  const ordered = [...hubs].sort((a, b) => compareStrings(a.name, b.name));
  const prefix = q.clientIdPrefix ?? '';
  let scanned = 0;
  let examined: [string, string] | undefined;
  for (const hub of ordered) {
    if (q.after && hub.name < q.after[0]) continue;
    const after = q.after && hub.name === q.after[0] ? q.after[1] : undefined;
    const walk = q.userId !== undefined ? userSessionsAfter(hub, q.userId, after) : hub.sessionsAfter(after, prefix === '' ? undefined : prefix);
    for (const s of walk) {
      if (!s.clientId.startsWith(prefix)) {
        if (q.userId === undefined) break; // the walk started at the prefix: past its range now
        continue;
      }
      // Stopped with more to see: go on after the last session returned, or examined
      if (items.length === q.limit) {
        const last = items.at(-1)!; // (maybe of the previous hub: the page filled at its end)
        return { items, next: [last.hub, last.clientId] };
      }
      if (++scanned > budget) return { items, next: examined };
      examined = [hub.name, s.clientId];
      if ((q.connected === undefined || s.isConnected === q.connected) && (q.persistent === undefined || s.persistent === q.persistent)) {
        items.push(summary(hub, s));
      }
    }
  }
  return { items, next: undefined };
}

/** A user's sessions after `after`, in client id order (a user has few sessions: sorted here). */
function* userSessionsAfter(hub: Hub, userId: string, after: string | undefined): IterableIterator<Session> {
  const sessions = [...hub.sessionsOfUser(userId)].sort((a, b) => compareStrings(a.clientId, b.clientId));
  for (const s of sessions) if (after === undefined || s.clientId > after) yield s;
}

/**
 * A page of a hub's live retained messages whose topics match `filter`, in topic order, after
 * `after`. The walk starts at the filter's literal first levels and ends past them; within
 * SCAN_BUDGET topics.
 */
export function retainedPage(hub: Hub | undefined, filter: string, after: string | undefined, limit: number, nowMs: number, budget = SCAN_BUDGET): Page<RetainedView, string> {
  const items: RetainedView[] = [];
  if (!hub) return { items, next: undefined };
  if (!hasWildcard(filter)) {
    // No wildcard: at most the one message at that topic
    const m = after !== undefined && filter <= after ? undefined : hub.retained.get(filter);
    const v = m && retainedView(m, nowMs);
    return { items: v && limit > 0 ? [v] : [], next: undefined };
  }
  // (`a/#` matches `a` too: the walk starts before the separator in front of the wildcard)
  const fixed = literalPrefix(filter);
  const literal = fixed.endsWith('/') ? fixed.slice(0, -1) : fixed;
  let scanned = 0;
  let previous: string | undefined;
  for (const topic of hub.retained.namesAfter(after, literal === '' ? undefined : literal)) {
    if (!topic.startsWith(literal)) break;
    if (items.length === limit) return { items, next: items.at(-1)!.topic };
    if (++scanned > budget) return { items, next: previous };
    previous = topic;
    if (!matchTopic(filter, topic)) continue;
    const m = hub.retained.get(topic);
    const v = m && retainedView(m, nowMs);
    if (v) items.push(v);
  }
  return { items, next: undefined };
}

/** Totals over `hubs`. */
export function engineTotals(hubs: Iterable<Hub>): EngineTotals {
  const t: EngineTotals = {
    hubs: 0, sessions: { total: 0, connected: 0, persistent: 0 }, subscriptions: 0, queued: { count: 0, bytes: 0 }, inflight: 0,
    retained: { count: 0, bytes: 0 },
  };
  for (const h of hubs) {
    t.hubs++;
    t.retained.count += h.retained.size;
    t.retained.bytes += h.retained.bytes;
    for (const s of h.sessions.values()) {
      t.sessions.total++;
      if (s.isConnected) t.sessions.connected++;
      if (s.persistent) t.sessions.persistent++;
      t.subscriptions += s.subscriptions.size;
      t.queued.count += s.outbox.queuedCount;
      t.queued.bytes += s.outbox.queuedBytes;
      t.inflight += s.outbox.inflightCount;
    }
  }
  return t;
}
