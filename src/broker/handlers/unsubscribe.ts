// UNSUBSCRIBE (MQTT 5 §3.10): remove subscriptions, commit, UNSUBACK.
import { MqttError } from '../../mqtt/errors.ts';
import type { UnsubscribePacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { validateUnsubscribe } from '../../mqtt/validate.ts';
import type { Connection } from '../connection.ts';

export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const invalid = validateUnsubscribe(p);
  if (invalid !== undefined) throw new MqttError(invalid, 'invalid UNSUBSCRIBE');
  const codes: number[] = [];
  const removed: string[] = [];
  for (const filter of p.topicFilters) {
    const existed = broker.sessions.unsubscribe(session, filter);
    if (existed) removed.push(filter);
    codes.push(existed ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted);
  }
  const committed = session.persistent && removed.length > 0
    ? broker.store.transaction((tx) => { for (const f of removed) tx.deleteSubscription(session.hub.name, session.clientId, f); })
    : undefined;
  // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
  conn.after(committed, () => {
    conn.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: codes });
    broker.audit({ hub: session.hub.name, event: 'unsubscribe', clientId: conn.clientId, actor: conn.principal?.userId, detail: { topicFilters: p.topicFilters, removed } });
  });
}
