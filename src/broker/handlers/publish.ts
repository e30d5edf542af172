// PUBLISH from a client (MQTT 5 §3.3): topic alias, validation, receive maximum, QoS 2 duplicate
// detection, authorization, then route → commit → dispatch → acknowledge, in packet order.
import { MqttError } from '../../mqtt/errors.ts';
import type { Message, PublishPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import { compactProperties } from '../../mqtt/codec.ts';
import { isTopicWithinLimits } from '../../mqtt/topic.ts';
import { isPayloadFormatValid, validatePublish } from '../../mqtt/validate.ts';
import type { Connection } from '../connection.ts';

/** Resolve an inbound Topic Alias (MQTT 5 §3.3.2.3.4). */
function resolveTopicAlias(conn: Connection, p: PublishPacket): void {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) return;
  // [MQTT-3.3.2-8] [MQTT-3.3.2-9] alias 0 or above our Topic Alias Maximum
  if (alias === 0 || alias > conn.broker.options.topicAliasMaximum) {
    throw new MqttError(ReasonCode.TopicAliasInvalid, `topic alias ${alias} is out of range`);
  }
  conn.inboundAliases ??= new Map();
  if (p.topicName.length > 0) {
    conn.inboundAliases.set(alias, p.topicName);
  } else {
    const topicName = conn.inboundAliases.get(alias);
    // [MQTT-3.3.4-?] an unknown alias with an empty topic name is a protocol error
    if (topicName === undefined) throw new MqttError(ReasonCode.ProtocolError, `unknown topic alias ${alias}`);
    p.topicName = topicName;
  }
}

function ack(conn: Connection, p: PublishPacket, reasonCode: number): void {
  if (p.qos === 1) {
    conn.inboundQos1Pending--;
    conn.send({ type: 'puback', packetId: p.packetId!, reasonCode });
  } else if (p.qos === 2) {
    if (reasonCode >= 0x80) conn.session?.inboundQos2.delete(p.packetId!);
    conn.send({ type: 'pubrec', packetId: p.packetId!, reasonCode });
  }
}

export function handlePublish(conn: Connection, p: PublishPacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const opts = broker.options;
  if (conn.version === 5) resolveTopicAlias(conn, p);
  const invalid = validatePublish(p, opts.maximumQos, opts.retainAvailable);
  if (invalid !== undefined) throw new MqttError(invalid, `invalid PUBLISH to ${p.topicName}`);
  if (!isTopicWithinLimits(p.topicName, opts.maxTopicBytes, opts.maxTopicLevels)) {
    // Longer or deeper than the broker stores: only this PUBLISH fails (5.0 QoS 1/2: its
    // acknowledgement says 0x90; QoS 0 has none, so DISCONNECT 0x90; 3.1.1: close)
    if (conn.version === 4 || p.qos === 0) throw new MqttError(ReasonCode.TopicNameInvalid, 'topic name exceeds the broker\'s length or level cap');
    broker.logger.debug({ clientId: conn.clientId, packetId: p.packetId, topicBytes: p.topicName.length }, 'publish refused: topic over the cap');
    const packetId = p.packetId!;
    conn.after(undefined, () => conn.send({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId, reasonCode: ReasonCode.TopicNameInvalid }));
    return;
  }
  if (p.qos === 2 && session.inboundQos2.has(p.packetId!)) {
    // [MQTT-4.3.3-9] a QoS 2 PUBLISH whose id awaits PUBREL is not routed again
    conn.reply({ type: 'pubrec', packetId: p.packetId!, reasonCode: 0 });
    return;
  }
  if (p.retain && opts.retainAvailable && session.hub.retainedOverQuota(p.topicName, p.payload.length, opts.maxRetainedMessages, opts.maxRetainedBytes)) {
    // Only this PUBLISH fails (5.0 QoS 1/2: 0x97 in its acknowledgement; QoS 0: DISCONNECT 0x97; 3.1.1: close)
    // Logged and audited on the first refusal of this connection, then every 1000th (never a flood)
    const refusals = ++conn.retainedRefusals;
    if (refusals === 1 || refusals % 1000 === 0) {
      const hub = session.hub;
      broker.logger.info({ clientId: conn.clientId, hub: hub.name, topicName: p.topicName, refusals, retained: hub.retained.size, retainedBytes: hub.retained.bytes }, 'retained publish refused: hub retained limit reached');
      broker.audit({
        hub: hub.name, event: 'retained_quota_exceeded', clientId: conn.clientId, actor: conn.principal?.userId,
        detail: { topicName: p.topicName, payloadBytes: p.payload.length, refusals, retained: hub.retained.size, retainedBytes: hub.retained.bytes },
      });
    }
    if (conn.version === 4 || p.qos === 0) throw new MqttError(ReasonCode.QuotaExceeded, 'retained message limit of the hub reached');
    const packetId = p.packetId!;
    conn.after(undefined, () => conn.send({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId, reasonCode: ReasonCode.QuotaExceeded }));
    return;
  }
  if (p.qos > 0) {
    // 3.1.1 has no Receive Maximum: above our cap on its unacknowledged publishes, it is closed
    if (conn.version === 4 && conn.inboundQos1Pending + session.inboundQos2.size >= opts.maxInflightInV3) {
      broker.logger.info({ clientId: conn.clientId, limit: opts.maxInflightInV3 }, '3.1.1 client exceeded the unacknowledged publish limit; connection closed');
      broker.audit({ hub: session.hub.name, event: 'inflight_limit_exceeded', clientId: conn.clientId, actor: 'broker', detail: { limit: opts.maxInflightInV3 } });
      throw new MqttError(ReasonCode.ReceiveMaximumExceeded, 'too many unacknowledged publishes');
    }
    // [MQTT-3.3.4-7] more unacknowledged QoS 1/2 publishes than our Receive Maximum. 3.1.1 has no
    // Receive Maximum, so a 3.1.1 client was never told a limit and must not be cut off for one.
    if (conn.version === 5 && conn.inboundQos1Pending + session.inboundQos2.size >= opts.receiveMaximum) {
      throw new MqttError(ReasonCode.ReceiveMaximumExceeded, 'receive maximum exceeded');
    }
    if (p.qos === 1) conn.inboundQos1Pending++;
    else session.inboundQos2.add(p.packetId!);
  }
  if (conn.version === 5 && !isPayloadFormatValid(p.payload, p.properties)) {
    // [MQTT-3.3.2-4] payload is not UTF-8 though the format indicator says so
    if (p.qos === 0) throw new MqttError(ReasonCode.PayloadFormatInvalid, 'payload is not valid UTF-8');
    conn.after(undefined, () => ack(conn, p, ReasonCode.PayloadFormatInvalid));
    return;
  }
  if (!broker.authorizer.canPublish(session.hub.name, conn.clientId, conn.principal!, p.topicName)) {
    broker.logger.debug({ clientId: conn.clientId, topicName: p.topicName }, 'publish not authorized');
    // [v3.1.1 MQTT-3.3.5-2] 3.1.1 has no negative ack: acknowledge and drop
    conn.after(undefined, () => ack(conn, p, conn.version === 5 ? ReasonCode.NotAuthorized : 0));
    return;
  }
  if (p.qos === 0 && p.retain && conn.readPaused && !conn.channel.pauseReading) {
    // The store is behind and this transport cannot stop reading (WebSocket): a retained QoS 0
    // publisher waits for no acknowledgement, so holding replies would not slow it, and each of its
    // messages needs a commit. It is told the server is busy rather than piling up units.
    throw new MqttError(ReasonCode.ServerBusy, 'the store is behind: retained QoS 0 publishes are not taken now');
  }
  const now = broker.clock.now();
  const expirySec = p.properties?.messageExpiryInterval;
  const message: Message = {
    id: broker.nextId(), hub: session.hub.name, topicName: p.topicName, payload: p.payload, qos: p.qos, retain: p.retain,
    properties: conn.version === 5 ? compactProperties(p.properties) : undefined,
    expiresAtMs: expirySec !== undefined && expirySec > 0 ? now + expirySec * 1000 : undefined,
    publisherId: conn.clientId, createdAtMs: now,
  };
  const persistQos2 = p.qos === 2 && session.persistent;
  // 3.1.1 has no negative acknowledgement: while the store is down the PUBACK/PUBREC is held
  // back and the commit retried for as long as the connection lasts.
  const plan = broker.route(message, persistQos2
    ? (tx) => tx.addInboundQos2({ hub: session.hub.name, clientId: session.clientId, packetId: p.packetId! })
    : undefined, conn.version === 4 && p.qos > 0 ? { retryWhileOpen: conn } : {});
  if (plan.committed !== undefined) broker.throttleIfBehind(conn);
  if (plan.committed === undefined && conn.repliesInOrder) {
    // Nothing to store and no earlier reply pending: dispatch and acknowledge now
    plan.dispatch();
    ack(conn, p, conn.version === 5 && plan.matched === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success);
    return;
  }
  conn.after(plan.committed, () => {
    plan.dispatch();
    // [MQTT-3.3.4-?] 5.0: No matching subscribers is reported with a success-class code
    const rc = conn.version === 5 && plan.matched === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success;
    ack(conn, p, rc);
  }, (err) => {
    broker.logger.error({ err, clientId: conn.clientId, topicName: p.topicName }, 'could not store message');
    plan.abandon();
    if (persistQos2) {
      // The outcome may be unknown (a commit abandoned by the watchdog can still have committed): the
      // id is forgotten below, so its row goes too, or after a restart a new PUBLISH reusing the id
      // would be taken for a duplicate and never routed
      const { name: hub } = session.hub;
      const { clientId } = session;
      const packetId = p.packetId!;
      broker.store.transaction((tx) => tx.deleteInboundQos2(hub, clientId, packetId))
        .catch((e: unknown) => broker.logger.warn({ err: e, clientId, packetId }, 'could not delete a failed QoS 2 packet id'));
    }
    // Never acknowledge what was not stored: 5.0 gets a failure code (which also forgets a QoS 2
    // id); a 3.1.1 connection whose held acknowledgement could not be stored is closed
    if (conn.version === 5 && p.qos > 0) {
      ack(conn, p, ReasonCode.ImplementationSpecificError);
    } else {
      if (p.qos === 2) session.inboundQos2.delete(p.packetId!);
      // 5.0 QoS 0 has no acknowledgement to carry the code: DISCONNECT says it
      conn.end(conn.version === 5 ? ReasonCode.ImplementationSpecificError : undefined);
    }
  }, true); // a stored message reaches its subscribers even if its publisher has gone meanwhile
}
