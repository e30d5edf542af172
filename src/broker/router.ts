// Fan-out planning: which sessions get a message, at which QoS, with which subscription ids.
// Overlapping subscriptions of one session give one delivery at the highest QoS; each shared
// group picks one member.
import type { Message, QoS } from '../mqtt/packet.ts';
import type { Hub } from './hub.ts';
import type { RouteTarget, Session, SharedGroup, Subscription } from './session.ts';

/** One planned delivery. */
export type Target = RouteTarget;

/** Stamp of the current planRoute call, marking the sessions it has already planned for. */
let routeStamp = 0;

/** Every session that must receive `message`, in no particular order. */
export function planRoute(hub: Hub, message: Message): Target[] {
  // Runs for every message: sessions met before in this call are found by their stamp, not a Map
  const stamp = ++routeStamp;
  const out: Target[] = [];
  hub.tree.match(message.topicName, (entry) => {
    if (entry.kind === 'shared') {
      const member = pickSharedMember(entry, undefined, message.qos);
      if (member) {
        const sub = member;
        out.push({
          session: sub.session, qos: Math.min(message.qos, sub.qos) as QoS, retain: sub.retainAsPublished && message.retain,
          subscriptionIds: sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined, shareKey: entry.key,
        });
      }
      return;
    }
    const session = entry.session;
    // [MQTT-3.8.3-3] No Local: never back to the publishing connection's session
    if (entry.noLocal && message.publisherId === session.clientId) return;
    const qos = Math.min(message.qos, entry.qos) as QoS; // [MQTT-3.8.4-8] downgrade to granted QoS
    const retain = entry.retainAsPublished && message.retain; // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
    if (session.routeStamp !== stamp) {
      session.routeStamp = stamp;
      const t: Target = {
        session, qos, retain, shareKey: undefined,
        subscriptionIds: entry.subscriptionId !== undefined ? [entry.subscriptionId] : undefined,
      };
      session.routeTarget = t;
      out.push(t);
      return;
    }
    // [MQTT-3.3.4-2] overlapping subscriptions: one copy at the highest QoS, [MQTT-3.3.4-3] every id
    const known = session.routeTarget!;
    if (qos > known.qos) known.qos = qos;
    if (retain) known.retain = true;
    if (entry.subscriptionId !== undefined) (known.subscriptionIds ??= []).push(entry.subscriptionId);
  });
  for (let i = 0; i < out.length; i++) out[i]!.session.routeTarget = undefined;
  return out;
}

/**
 * Pick a member of a shared group, round-robin: first one whose session is connected with room
 * in its window, else any connected one, else a persistent (offline) one.
 */
export function pickSharedMember(group: SharedGroup, exclude: Session | undefined, qos: QoS): Subscription | undefined {
  const n = group.members.length;
  let connected: Subscription | undefined;
  let offline: Subscription | undefined;
  for (let k = 0; k < n; k++) {
    const i = (group.next + k) % n;
    const sub = group.members[i]!;
    const session = sub.session;
    if (session === exclude) continue;
    if (session.isConnected) {
      if (qos === 0 || session.outbox.hasRoom) {
        group.next = (i + 1) % n;
        return sub;
      }
      connected ??= sub;
    } else if (session.persistent) {
      offline ??= sub;
    }
  }
  const pick = connected ?? offline;
  if (pick) group.next = (group.members.indexOf(pick) + 1) % n;
  return pick;
}
