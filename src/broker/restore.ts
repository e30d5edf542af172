// Start-up: rebuild memory from the store's state (retained messages, sessions, subscriptions,
// deliveries, inbound QoS 2 ids, wills), then arm wills and expiries from their stored times.
// Sessions stored as connected were connected when the broker stopped: a network failure now.
import type { Message } from '../mqtt/packet.ts';
import { QueuedDelivery } from './delivery.ts';
import type { Hubs } from './hub.ts';
import type { Logger, StoredState } from './ports.ts';
import type { Session } from './session.ts';
import type { SessionManager } from './session-manager.ts';
import { toSubscription } from './subscriptions.ts';
import type { Wills } from './wills.ts';

/** What restoring needs. */
export interface RestoreDeps {
  readonly hubs: Hubs;
  readonly sessions: SessionManager;
  readonly wills: Wills;
  readonly logger: Logger;
  readonly nowMs: number;
}

/** The largest message or delivery id in `state` (ids handed out later must be above it). */
export function maxStoredId(state: StoredState): number {
  let maxId = 0;
  for (const m of state.messages) if (m.id > maxId) maxId = m.id;
  for (const d of state.deliveries) if (d.id > maxId) maxId = d.id;
  for (const m of state.retained) if (m.id > maxId) maxId = m.id;
  return maxId;
}

/** Rebuild sessions, subscriptions, deliveries, wills and retained messages from the store. */
export function restoreState(state: StoredState, deps: RestoreDeps): void {
  const { hubs, sessions, wills, logger, nowMs } = deps;
  for (const m of state.retained) hubs.get(m.hub).retained.set(m.topicName, m);
  const crashed = new Set<Session>();
  for (const r of state.sessions) {
    const hub = hubs.get(r.hub);
    const s = sessions.create(hub.name, r.clientId, r);
    s.persistent = true;
    s.expiryIntervalSec = r.expiryIntervalSec;
    s.userId = r.userId ?? undefined;
    // A session stored as connected was connected when the broker stopped: treat it as a network failure now.
    s.disconnectedAtMs = r.disconnectedAtMs ?? nowMs;
    if (r.disconnectedAtMs === null) crashed.add(s);
    hub.putSession(s);
  }
  const find = (hub: string, clientId: string): Session | undefined => hubs.get(hub).sessions.get(clientId);
  for (const r of state.subscriptions) {
    const s = find(r.hub, r.clientId);
    if (s) hubs.get(r.hub).addSubscription(toSubscription(s, r, r.subscriptionId));
  }
  const messages = new Map<number, Message>();
  for (const m of state.messages) messages.set(m.id, m);
  const deliveries = [...state.deliveries].sort((a, b) => a.id - b.id);
  for (const r of deliveries) {
    const s = find(r.hub, r.clientId);
    const message = messages.get(r.messageId);
    if (!s || !message) continue;
    const d = new QueuedDelivery(r.id, message, r.qos, r.retain, r.subscriptionIds.length ? r.subscriptionIds : undefined, r.shareKey, r.packetId, r.state);
    s.outbox.restore(d);
  }
  for (const r of state.inboundQos2) find(r.hub, r.clientId)?.inboundQos2.add(r.packetId);
  for (const w of state.wills) {
    const s = find(w.hub, w.clientId);
    if (s) s.will = w;
  }
  for (const s of crashed) sessions.persist(s, (tx) => tx.putSession(sessions.record(s, false)));
  for (const s of crashed) if (s.will) wills.schedule(s);
  for (const hub of hubs.values()) {
    for (const s of [...hub.sessions.values()]) {
      if (s.will && !s.willTimer && !crashed.has(s)) wills.schedule(s);
      sessions.scheduleExpiry(s);
    }
  }
  logger.info({ sessions: state.sessions.length, deliveries: state.deliveries.length, retained: state.retained.length }, 'state restored');
}
