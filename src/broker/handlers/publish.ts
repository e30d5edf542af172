// PUBLISH from a client (MQTT 5 §3.3): topic alias, validation, receive maximum, QoS 2 duplicate
// detection, authorization, then route → commit → dispatch → acknowledge, in packet order.
import { MqttError } from '../../mqtt/errors.ts';
import type { Message, PublishPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { compactProperties } from '../../mqtt/codec.ts';
import { isTopicWithinLimits } from '../../mqtt/topic.ts';
import { isPayloadFormatValid, validatePublish } from '../../mqtt/validate.ts';
import type { Connected } from '../context.ts';
import { reportDenial } from '../denials.ts';
import { EventType } from '../events.ts';

/** Resolve an inbound Topic Alias (MQTT 5 §3.3.2.3.4). */
function resolveTopicAlias(c: Connected, p: PublishPacket): void {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) {
    // [MQTT-3.3.2-1] a zero-length Topic Name without a Topic Alias is a Protocol Error (5.0 §3.3.2.3.4)
    if (p.topicName.length === 0) throw new MqttError(ReasonCode.ProtocolError, 'empty topic name without a topic alias');
    return;
  }
  // [MQTT-3.3.2-8] [MQTT-3.3.2-9] alias 0 or above our Topic Alias Maximum
  if (alias === 0 || alias > c.engine.options.topicAliasMaximum) {
    throw new MqttError(ReasonCode.TopicAliasInvalid, `topic alias ${alias} is out of range`);
  }
  c.inboundAliases ??= new Map();
  if (p.topicName.length > 0) {
    c.inboundAliases.set(alias, p.topicName);
  } else {
    const topicName = c.inboundAliases.get(alias);
    // [MQTT-3.3.4-?] an unknown alias with an empty topic name is a protocol error
    if (topicName === undefined) throw new MqttError(ReasonCode.ProtocolError, `unknown topic alias ${alias}`);
    p.topicName = topicName;
  }
}

function ack(c: Connected, p: PublishPacket, reasonCode: number): void {
  if (p.qos === 1) {
    c.inboundQos1Pending--;
    c.out.send({ type: 'puback', packetId: p.packetId!, reasonCode });
  } else if (p.qos === 2) {
    if (reasonCode >= 0x80) c.session.inboundQos2.delete(p.packetId!);
    c.out.send({ type: 'pubrec', packetId: p.packetId!, reasonCode });
  }
}

/** PUBLISH from a client. */
export function handlePublish(c: Connected, p: PublishPacket): void {
  const { engine, session, out } = c;
  const opts = engine.options;
  const stats = engine.stats;
  stats.received[p.qos]++;
  stats.receivedBytes[p.qos] += p.payload.length;
  if (c.version === 5) resolveTopicAlias(c, p);
  const invalid = validatePublish(p, opts.maximumQos, opts.retainAvailable);
  if (invalid !== undefined) throw new MqttError(invalid, `invalid PUBLISH to ${p.topicName}`);
  if (!isTopicWithinLimits(p.topicName, opts.maxTopicBytes, opts.maxTopicLevels)) {
    // Longer or deeper than the broker stores: only this PUBLISH fails (5.0 QoS 1/2: its
    // acknowledgement says 0x90; QoS 0 has none, so DISCONNECT 0x90; 3.1.1: close)
    if (c.version === 4 || p.qos === 0) throw new MqttError(ReasonCode.TopicNameInvalid, 'topic name exceeds the broker\'s length or level cap');
    engine.logger.debug({ clientId: c.clientId, packetId: p.packetId, topicBytes: p.topicName.length }, 'publish refused: topic over the cap');
    const packetId = p.packetId!;
    out.after(undefined, () => out.send({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId, reasonCode: ReasonCode.TopicNameInvalid }));
    return;
  }
  if (p.qos === 2 && session.inboundQos2.has(p.packetId!)) {
    // [MQTT-4.3.3-9] a QoS 2 PUBLISH whose id awaits PUBREL is not routed again
    out.reply({ type: 'pubrec', packetId: p.packetId!, reasonCode: 0 });
    return;
  }
  const hub = session.hub;
  if (p.retain && opts.retainAvailable && hub.retainedOverQuota(p.topicName, p.payload.length, opts.maxRetainedMessages, opts.maxRetainedBytes)) {
    // Only this PUBLISH fails (5.0 QoS 1/2: 0x97 in its acknowledgement; QoS 0: DISCONNECT 0x97; 3.1.1: close)
    // Logged and audited on the first refusal of this connection, then every 1000th (never a flood)
    const refusals = ++c.retainedRefusals;
    if (refusals === 1 || refusals % 1000 === 0) {
      engine.logger.info({ clientId: c.clientId, hub: hub.name, topicName: p.topicName, refusals, retained: hub.retained.size, retainedBytes: hub.retained.bytes }, 'retained publish refused: hub retained limit reached');
      engine.events.emit({
        type: EventType.RetainedQuotaExceeded, hub: hub.name, clientId: c.clientId, userId: c.principal.userId,
        topicName: p.topicName, payloadBytes: p.payload.length, refusals, retained: hub.retained.size, retainedBytes: hub.retained.bytes,
      });
    }
    if (c.version === 4 || p.qos === 0) throw new MqttError(ReasonCode.QuotaExceeded, 'retained message limit of the hub reached');
    const packetId = p.packetId!;
    out.after(undefined, () => out.send({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId, reasonCode: ReasonCode.QuotaExceeded }));
    return;
  }
  if (p.qos > 0) {
    // 3.1.1 has no Receive Maximum: above our cap on its unacknowledged publishes, it is closed
    if (c.version === 4 && c.inboundQos1Pending + session.inboundQos2.size >= opts.maxInflightInV3) {
      engine.logger.info({ clientId: c.clientId, limit: opts.maxInflightInV3 }, '3.1.1 client exceeded the unacknowledged publish limit; connection closed');
      engine.events.emit({ type: EventType.InflightLimitExceeded, hub: session.hub.name, clientId: c.clientId, limit: opts.maxInflightInV3 });
      throw new MqttError(ReasonCode.ReceiveMaximumExceeded, 'too many unacknowledged publishes');
    }
    // [MQTT-3.3.4-7] more unacknowledged QoS 1/2 publishes than our Receive Maximum. 3.1.1 has no
    // Receive Maximum, so a 3.1.1 client was never told a limit and must not be cut off for one.
    if (c.version === 5 && c.inboundQos1Pending + session.inboundQos2.size >= opts.receiveMaximum) {
      throw new MqttError(ReasonCode.ReceiveMaximumExceeded, 'receive maximum exceeded');
    }
    if (p.qos === 1) c.inboundQos1Pending++;
    else session.inboundQos2.add(p.packetId!);
  }
  if (c.version === 5 && !isPayloadFormatValid(p.payload, p.properties)) {
    // [MQTT-3.3.2-4] payload is not UTF-8 though the format indicator says so
    if (p.qos === 0) throw new MqttError(ReasonCode.PayloadFormatInvalid, 'payload is not valid UTF-8');
    out.after(undefined, () => ack(c, p, ReasonCode.PayloadFormatInvalid));
    return;
  }
  if (!engine.authorizer.canPublish(session.hub.name, c.clientId, c.principal, p.topicName)) {
    reportDenial(c, 'publish', p.topicName);
    // [v3.1.1 MQTT-3.3.5-2] 3.1.1 has no negative ack: acknowledge and drop
    out.after(undefined, () => ack(c, p, c.version === 5 ? ReasonCode.NotAuthorized : 0));
    return;
  }
  if (p.qos === 0 && p.retain && out.readPaused && !out.canPauseReading && (p.payload.length === 0 || engine.publishing.farBehind)) {
    // The store is behind and this transport cannot stop reading (WebSocket): a retained QoS 0
    // publisher waits for no acknowledgement, so holding replies would not slow it, and each of its
    // messages needs a commit. Stored ones are counted by the hub's retained caps while they are
    // committed, so a bulk load is taken until the backlog is far behind; clearings (empty payloads,
    // which the caps always allow) are not, and the publisher is told the server is busy instead.
    throw new MqttError(ReasonCode.ServerBusy, 'the store is behind: retained QoS 0 publishes are not taken now');
  }
  const now = engine.clock.now();
  const expirySec = p.properties?.messageExpiryInterval;
  const message: Message = {
    id: engine.ids.next(), hub: session.hub.name, topicName: p.topicName, payload: p.payload, qos: p.qos, retain: p.retain,
    properties: c.version === 5 ? compactProperties(p.properties) : undefined,
    expiresAtMs: expirySec !== undefined && expirySec > 0 ? now + expirySec * 1000 : undefined,
    publisherId: c.clientId, createdAtMs: now,
  };
  const persistQos2 = p.qos === 2 && session.persistent;
  const publishing = engine.publishing;
  // 3.1.1 has no negative acknowledgement: while the store is down the PUBACK/PUBREC is held
  // back and the commit retried for as long as the connection lasts.
  const plan = publishing.route(message, persistQos2
    ? (tx) => tx.addInboundQos2({ hub: session.hub.name, clientId: session.clientId, packetId: p.packetId! })
    : undefined, c.version === 4 && p.qos > 0 ? { retryWhileOpen: out, fate: out } : { fate: out });
  if (plan.committed !== undefined) publishing.throttleIfBehind(out);
  if (plan.committed === undefined && out.repliesInOrder) {
    // Nothing to store and no earlier reply pending: dispatch and acknowledge now
    plan.dispatch();
    ack(c, p, c.version === 5 && plan.matched === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success);
    return;
  }
  out.after(plan.committed, () => {
    plan.dispatch();
    // [MQTT-3.3.4-?] 5.0: No matching subscribers is reported with a success-class code
    const rc = c.version === 5 && plan.matched === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success;
    ack(c, p, rc);
  }, (err) => {
    engine.logger.error({ err, clientId: c.clientId, topicName: p.topicName }, 'could not store message');
    plan.abandon();
    if (persistQos2) engine.sessions.dropFailedInbound(session, p.packetId!);
    // Never acknowledge what was not stored: 5.0 gets a failure code (which also forgets a QoS 2
    // id); a 3.1.1 connection whose held acknowledgement could not be stored is closed
    if (c.version === 5 && p.qos > 0) {
      ack(c, p, ReasonCode.ImplementationSpecificError);
    } else {
      if (p.qos === 2) session.inboundQos2.delete(p.packetId!);
      // 5.0 QoS 0 has no acknowledgement to carry the code: DISCONNECT says it
      out.end(c.version === 5 ? ReasonCode.ImplementationSpecificError : undefined);
    }
  }, true); // a stored message reaches its subscribers even if its publisher has gone meanwhile
}
