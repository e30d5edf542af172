// What the admin API sees of sessions, retained messages and the engine's totals: plain objects
// built from engine state (no live references escape). Pure reads; nothing here changes state.
import type { Message, ProtocolVersion, QoS } from '../mqtt/packet.ts';
import type { Hub } from './hub.ts';
import type { Session } from './session.ts';

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
