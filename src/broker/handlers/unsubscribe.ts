// UNSUBSCRIBE (MQTT 5 §3.10): remove subscriptions, commit, UNSUBACK.
import { MqttError } from '../../mqtt/errors.ts';
import type { UnsubscribePacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { validateUnsubscribe } from '../../mqtt/validate.ts';
import type { Connection } from '../connection.ts';
import type { Subscription } from '../session.ts';

export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const invalid = validateUnsubscribe(p);
  if (invalid !== undefined) throw new MqttError(invalid, 'invalid UNSUBSCRIBE');
  const codes: number[] = [];
  const removed: Subscription[] = [];
  for (const filter of p.topicFilters) {
    const sub = broker.sessions.unsubscribe(session, filter);
    if (sub) removed.push(sub);
    codes.push(sub ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted);
  }
  const committed = session.persistent && removed.length > 0
    ? broker.store.transaction((tx) => { for (const s of removed) tx.deleteSubscription(session.hub.name, session.clientId, s.key); })
    : undefined;
  // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
  conn.after(committed, () => {
    conn.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: codes });
    broker.audit({ hub: session.hub.name, event: 'unsubscribe', clientId: conn.clientId, actor: conn.principal?.userId, detail: { topicFilters: p.topicFilters, removed: removed.map((s) => s.key) } });
  }, (err) => {
    // The subscriptions are still stored: route them again, so memory and store agree (and a
    // restart does not bring back a subscription the client was told is gone)
    broker.logger.error({ err, clientId: session.clientId, topicFilters: p.topicFilters }, 'could not store unsubscribe; subscriptions kept');
    broker.sessions.restoreSubscriptions(session, removed);
    if (conn.state === 'closed') return;
    if (conn.version === 5) {
      conn.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: codes.map((c) => (c === ReasonCode.Success ? ReasonCode.ImplementationSpecificError : c)) });
    } else {
      conn.end(undefined); // 3.1.1 UNSUBACK has no failure code
    }
  }, true); // the routing follows the commit's outcome even if the connection has gone meanwhile
}
