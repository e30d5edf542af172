// SUBSCRIBE (MQTT 5 §3.8): per-filter validation, feature switches and authorization, routing
// change, durable commit, SUBACK, then retained messages.
import { MqttError } from '../../mqtt/errors.ts';
import type { SubscribePacket, SubscriptionRequest } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { hasWildcard, parseSharedFilter } from '../../mqtt/topic.ts';
import { validateSubscribe, validateSubscriptionFilter } from '../../mqtt/validate.ts';
import type { Connection } from '../connection.ts';

/** 3.1.1 SUBACK failure return code [v3.1.1 MQTT-3.9.3-2]. */
const V3_FAILURE = 0x80;

export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const broker = conn.broker;
  const opts = broker.options;
  const session = conn.session!;
  const invalid = validateSubscribe(p);
  if (invalid !== undefined) throw new MqttError(invalid, 'invalid SUBSCRIBE');
  const subscriptionId = p.properties?.subscriptionIdentifier;
  const codes: number[] = [];
  const accepted: SubscriptionRequest[] = [];
  let held = session.subscriptions.size;
  let added: Set<string> | undefined; // filters new to the session in this packet
  for (const req of p.subscriptions) {
    let rc = grant(conn, req, subscriptionId);
    if (rc === ReasonCode.ProtocolError) throw new MqttError(rc, `invalid subscription options for ${req.topicFilter}`);
    if (rc === undefined && !session.subscriptions.has(req.topicFilter) && !added?.has(req.topicFilter)) {
      if (held >= opts.maxSubscriptionsPerSession) {
        rc = ReasonCode.QuotaExceeded;
        broker.logger.info({ clientId: conn.clientId, topicFilter: req.topicFilter, limit: opts.maxSubscriptionsPerSession }, 'subscription refused: session subscription limit reached');
      } else {
        held++;
        (added ??= new Set()).add(req.topicFilter);
      }
    }
    if (rc !== undefined) {
      codes.push(conn.version === 5 ? rc : V3_FAILURE);
      continue;
    }
    // [MQTT-3.9.3-?] granted QoS never above the broker's maximum
    const qos = Math.min(req.qos, opts.maximumQos) as 0 | 1 | 2;
    accepted.push(qos === req.qos ? req : { ...req, qos });
    codes.push(qos);
  }
  const { committed, afterAck, undo } = broker.sessions.subscribeMany(session, accepted, subscriptionId);
  conn.after(committed, () => {
    if (conn.state === 'closed') return;
    // [MQTT-3.8.4-1] SUBACK with the same packet id, one code per filter [MQTT-3.8.4-6]
    conn.send({ type: 'suback', packetId: p.packetId, reasonCodes: codes });
    broker.audit({
      hub: session.hub.name, event: 'subscribe', clientId: conn.clientId, actor: conn.principal?.userId,
      detail: { filters: p.subscriptions.map((s, i) => ({ topicFilter: s.topicFilter, qos: s.qos, reasonCode: codes[i] })) },
    });
    afterAck();
  }, (err) => {
    broker.logger.error({ err, clientId: conn.clientId }, 'could not store subscriptions');
    undo(); // a subscription that was not stored must not deliver, even when its client has gone
    if (conn.state === 'closed') return;
    if (conn.version === 5) {
      conn.send({ type: 'suback', packetId: p.packetId, reasonCodes: codes.map(() => ReasonCode.ImplementationSpecificError) });
    } else {
      conn.end(undefined);
    }
  }, true);
}

/** Undefined if the subscription can be granted, else the failure code for this filter. */
function grant(conn: Connection, req: SubscriptionRequest, subscriptionId: number | undefined): ReasonCode | undefined {
  const opts = conn.broker.options;
  const invalid = validateSubscriptionFilter(req.topicFilter, req.noLocal, opts);
  if (invalid !== undefined) return invalid;
  const shared = parseSharedFilter(req.topicFilter);
  if (shared && !opts.sharedSubscriptionAvailable) return ReasonCode.SharedSubscriptionsNotSupported;
  const filter = shared ? shared.topicFilter : req.topicFilter;
  if (!opts.wildcardSubscriptionAvailable && hasWildcard(filter)) return ReasonCode.WildcardSubscriptionsNotSupported;
  if (subscriptionId !== undefined && !opts.subscriptionIdentifiersAvailable) return ReasonCode.SubscriptionIdentifiersNotSupported;
  const session = conn.session!;
  if (!conn.broker.authorizer.canSubscribe(session.hub.name, conn.clientId, conn.principal!, req.topicFilter)) {
    return ReasonCode.NotAuthorized;
  }
  return undefined;
}
