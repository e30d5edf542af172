// SUBSCRIBE (MQTT 5 §3.8): per-filter validation, feature switches and authorization, routing
// change, durable commit, SUBACK, then retained messages.
import { MqttError } from '../../mqtt/errors.ts';
import type { SubscribePacket, SubscriptionRequest } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { hasWildcard, parseSharedFilter } from '../../mqtt/topic.ts';
import { validateSubscribe, validateSubscriptionFilter } from '../../mqtt/validate.ts';
import type { Connected } from '../context.ts';
import { reportDenial } from '../denials.ts';
import { EventType } from '../events.ts';

/** 3.1.1 SUBACK failure return code [v3.1.1 MQTT-3.9.3-2]. */
const V3_FAILURE = 0x80;

/** SUBSCRIBE from a client. */
export function handleSubscribe(c: Connected, p: SubscribePacket): void {
  const { engine, session, out } = c;
  const opts = engine.options;
  const invalid = validateSubscribe(p);
  if (invalid !== undefined) throw new MqttError(invalid, 'invalid SUBSCRIBE');
  const subscriptionId = p.properties?.subscriptionIdentifier;
  const codes: number[] = [];
  const accepted: SubscriptionRequest[] = [];
  let held = session.subscriptions.size;
  let added: Set<string> | undefined; // filters new to the session in this packet
  for (const req of p.subscriptions) {
    let rc = grant(c, req, subscriptionId);
    if (rc === ReasonCode.ProtocolError) throw new MqttError(rc, `invalid subscription options for ${req.topicFilter}`);
    if (rc === undefined && !session.subscriptions.has(req.topicFilter) && !added?.has(req.topicFilter)) {
      if (held >= opts.maxSubscriptionsPerSession) {
        rc = ReasonCode.QuotaExceeded;
        engine.logger.info({ clientId: c.clientId, topicFilter: req.topicFilter, limit: opts.maxSubscriptionsPerSession }, 'subscription refused: session subscription limit reached');
      } else {
        held++;
        (added ??= new Set()).add(req.topicFilter);
      }
    }
    if (rc !== undefined) {
      codes.push(c.version === 5 ? rc : V3_FAILURE);
      continue;
    }
    // [MQTT-3.9.3-?] granted QoS never above the broker's maximum
    const qos = Math.min(req.qos, opts.maximumQos) as 0 | 1 | 2;
    accepted.push(qos === req.qos ? req : { ...req, qos });
    codes.push(qos);
  }
  const { committed, afterAck, undo } = engine.subscriptions.subscribeMany(session, accepted, subscriptionId);
  out.after(committed, () => {
    if (!out.isOpen) return;
    // [MQTT-3.8.4-1] SUBACK with the same packet id, one code per filter [MQTT-3.8.4-6]
    out.send({ type: 'suback', packetId: p.packetId, reasonCodes: codes });
    engine.events.emit({
      type: EventType.Subscribe, hub: session.hub.name, clientId: c.clientId, userId: c.principal.userId,
      filters: p.subscriptions.map((s, i) => ({ topicFilter: s.topicFilter, qos: s.qos, reasonCode: codes[i] })),
    });
    afterAck();
  }, (err) => {
    engine.logger.error({ err, clientId: c.clientId }, 'could not store subscriptions');
    undo(); // a subscription that was not stored must not deliver, even when its client has gone
    if (!out.isOpen) return;
    if (c.version === 5) {
      out.send({ type: 'suback', packetId: p.packetId, reasonCodes: codes.map(() => ReasonCode.ImplementationSpecificError) });
    } else {
      out.end(undefined);
    }
  }, true);
}

/** Undefined if the subscription can be granted, else the failure code for this filter. */
function grant(c: Connected, req: SubscriptionRequest, subscriptionId: number | undefined): ReasonCode | undefined {
  const opts = c.engine.options;
  const invalid = validateSubscriptionFilter(req.topicFilter, req.noLocal, opts);
  if (invalid !== undefined) return invalid;
  const shared = parseSharedFilter(req.topicFilter);
  if (shared && !opts.sharedSubscriptionAvailable) return ReasonCode.SharedSubscriptionsNotSupported;
  const filter = shared ? shared.topicFilter : req.topicFilter;
  if (!opts.wildcardSubscriptionAvailable && hasWildcard(filter)) return ReasonCode.WildcardSubscriptionsNotSupported;
  if (subscriptionId !== undefined && !opts.subscriptionIdentifiersAvailable) return ReasonCode.SubscriptionIdentifiersNotSupported;
  if (!c.engine.authorizer.canSubscribe(c.session.hub.name, c.clientId, c.principal, req.topicFilter)) {
    reportDenial(c, 'subscribe', req.topicFilter);
    return ReasonCode.NotAuthorized;
  }
  return undefined;
}
