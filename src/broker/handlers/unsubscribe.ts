// UNSUBSCRIBE (MQTT 5 §3.10): remove subscriptions, commit, UNSUBACK.
import { MqttError } from '../../mqtt/errors.ts';
import type { UnsubscribePacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { validateUnsubscribe } from '../../mqtt/validate.ts';
import type { Connected } from '../context.ts';
import { EventType } from '../events.ts';

/** UNSUBSCRIBE from a client. */
export function handleUnsubscribe(c: Connected, p: UnsubscribePacket): void {
  const { engine, session, out } = c;
  const invalid = validateUnsubscribe(p);
  if (invalid !== undefined) throw new MqttError(invalid, 'invalid UNSUBSCRIBE');
  const { found, removed, committed, undo } = engine.subscriptions.unsubscribe(session, p.topicFilters);
  const codes = found.map((f) => (f ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted));
  // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
  out.after(committed, () => {
    out.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: codes });
    engine.events.emit({
      type: EventType.Unsubscribe, hub: session.hub.name, clientId: c.clientId, userId: c.principal.userId,
      topicFilters: p.topicFilters, removed: removed.map((s) => s.key),
    });
  }, (err) => {
    // The subscriptions are still stored: route them again, so memory and store agree (and a
    // restart does not bring back a subscription the client was told is gone)
    engine.logger.error({ err, clientId: session.clientId, topicFilters: p.topicFilters }, 'could not store unsubscribe; subscriptions kept');
    undo();
    if (!out.isOpen) return;
    if (c.version === 5) {
      out.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: codes.map((rc) => (rc === ReasonCode.Success ? ReasonCode.ImplementationSpecificError : rc)) });
    } else {
      out.end(undefined); // 3.1.1 UNSUBACK has no failure code
    }
  }, true); // the routing follows the commit's outcome even if the connection has gone meanwhile
}
