// Packet rules that the decoder does not check, each with its normative id. Validators return a
// ReasonCode for a failure (undefined when valid) and never throw.
import type { ConnectPacket, MessageProperties, PublishPacket, SubscribePacket, UnsubscribePacket } from './packet.ts';
import { ReasonCode } from './reason-code.ts';
import { isTopicWithinLimits, isValidTopicFilter, isValidTopicName, parseSharedFilter } from './topic.ts';
import { isUtf8 } from 'node:buffer';

/** A string decoded from the wire that held malformed UTF-8 or U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). */
export function isBadWireString(s: string | undefined): boolean {
  if (s === undefined) return false;
  // anything but a string here (a value the decoder could not read) is bad too, never a TypeError
  return typeof s !== 'string' || s.includes('\uFFFD') || s.includes('\u0000');
}

/** Server capabilities a 5.0 CONNECT's will must fit (MQTT 5 §3.2.2.3.4, §3.2.2.3.5). */
export interface ConnectLimits {
  maximumQos: number;
  retainAvailable: boolean;
  /** Caps that keep a client id and a will topic within what the store indexes (see TopicLimits). */
  maxClientIdBytes?: number;
  topic?: TopicLimits;
}

/** Caps on topic names and filters, beyond the protocol's 65,535 bytes: they keep index rows small. */
export interface TopicLimits {
  maxTopicBytes: number;
  maxTopicFilterBytes: number;
  maxTopicLevels: number;
}

/** [MQTT-1.5.4-2] user property names and values are UTF-8 strings without U+0000. */
function hasBadUserProperty(u: Record<string, string | string[]> | undefined): boolean {
  if (!u) return false;
  for (const [k, v] of Object.entries(u)) {
    if (isBadWireString(k)) return true;
    for (const item of Array.isArray(v) ? v : [v]) if (isBadWireString(item)) return true;
  }
  return false;
}

/** CONNECT rules beyond framing. Returns the CONNACK reason code on failure. */
export function validateConnect(p: ConnectPacket, limits?: ConnectLimits): ReasonCode | undefined {
  // [MQTT-3.1.2-1] protocol name must be "MQTT" for 3.1.1 and 5.0
  if (p.protocolName !== 'MQTT') return ReasonCode.UnsupportedProtocolVersion;
  if (isBadWireString(p.clientId) || isBadWireString(p.username)) return ReasonCode.MalformedPacket;
  // [MQTT-3.1.3-5] a server may refuse a client id it does not accept: ours are capped in bytes
  if (limits?.maxClientIdBytes !== undefined && !isTopicWithinLimits(p.clientId, limits.maxClientIdBytes, Number.POSITIVE_INFINITY)) {
    return ReasonCode.ClientIdentifierNotValid;
  }
  if (p.will) {
    // the will topic is a topic name (will QoS 3 is refused in handlers/connect.ts)
    if (!isValidTopicName(p.will.topicName) || isBadWireString(p.will.topicName)) return ReasonCode.TopicNameInvalid;
    if (limits?.topic && !isTopicWithinLimits(p.will.topicName, limits.topic.maxTopicBytes, limits.topic.maxTopicLevels)) {
      return ReasonCode.TopicNameInvalid;
    }
    const wp = p.will.properties;
    if (wp && (hasBadUserProperty(wp.userProperties) || isBadWireString(wp.contentType) || isBadWireString(wp.responseTopic))) {
      return ReasonCode.MalformedPacket;
    }
    if (p.protocolVersion === 5 && p.will.properties?.payloadFormatIndicator && !isUtf8(p.will.payload)) {
      return ReasonCode.PayloadFormatInvalid; // [MQTT-3.1.3-11]
    }
    if (limits && p.protocolVersion === 5) {
      // [MQTT-3.2.2-12] a Will QoS above Maximum QoS is refused with 0x9B
      if (p.will.qos > limits.maximumQos) return ReasonCode.QosNotSupported;
      // [MQTT-3.2.2-13] Will Retain 1 when retained messages are not supported is refused with 0x9A
      if (p.will.retain && !limits.retainAvailable) return ReasonCode.RetainNotSupported;
    }
  }
  const props = p.properties;
  if (props && hasBadUserProperty(props.userProperties)) return ReasonCode.MalformedPacket;
  if (props) {
    // [MQTT-3.1.2-?] Receive Maximum and Maximum Packet Size of 0 are protocol errors
    if (props.receiveMaximum === 0) return ReasonCode.ProtocolError;
    if (props.maximumPacketSize === 0) return ReasonCode.ProtocolError;
    if (props.authenticationData !== undefined && props.authenticationMethod === undefined) return ReasonCode.ProtocolError;
    // the method is echoed into a reason string and the audit log
    if (isBadWireString(props.authenticationMethod)) return ReasonCode.MalformedPacket;
  }
  return undefined;
}

/** PUBLISH rules; the caller has already resolved the topic alias. */
export function validatePublish(p: PublishPacket, maximumQos: number, retainAvailable: boolean): ReasonCode | undefined {
  // [MQTT-3.3.1-2] DUP must be 0 for QoS 0
  if (p.qos === 0 && p.dup) return ReasonCode.MalformedPacket;
  // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] non-empty
  if (!isValidTopicName(p.topicName)) return ReasonCode.TopicNameInvalid;
  // [MQTT-3.2.2-11] a QoS above Maximum QoS is a protocol violation
  if (p.qos > maximumQos) return ReasonCode.QosNotSupported;
  // [MQTT-3.2.2-14] retain when Retain Available is 0
  if (p.retain && !retainAvailable) return ReasonCode.RetainNotSupported;
  if (p.qos > 0 && !p.packetId) return ReasonCode.ProtocolError; // [MQTT-2.2.1-3] non-zero packet id
  const props = p.properties;
  if (props) {
    if (props.subscriptionIdentifier !== undefined) return ReasonCode.ProtocolError; // [MQTT-3.3.4-6]
    if (isBadWireString(props.contentType) || isBadWireString(props.responseTopic)) return ReasonCode.MalformedPacket;
    if (hasBadUserProperty(props.userProperties)) return ReasonCode.MalformedPacket;
    // [MQTT-3.3.2-14] response topic is a topic name
    if (props.responseTopic !== undefined && !isValidTopicName(props.responseTopic)) return ReasonCode.ProtocolError;
  }
  return undefined;
}

/** [MQTT-3.3.2-4]: a UTF-8 payload format indicator must come with a UTF-8 payload. */
export function isPayloadFormatValid(payload: Buffer, props: MessageProperties | undefined): boolean {
  return !props?.payloadFormatIndicator || isUtf8(payload);
}

/** SUBSCRIBE packet-level rules (per-filter rules are applied by the handler). */
export function validateSubscribe(p: SubscribePacket): ReasonCode | undefined {
  if (p.packetId === 0) return ReasonCode.ProtocolError; // [MQTT-2.2.1-3] non-zero packet id
  if (p.subscriptions.length === 0) return ReasonCode.ProtocolError; // [MQTT-3.8.3-2]
  for (const s of p.subscriptions) {
    if (isBadWireString(s.topicFilter)) return ReasonCode.MalformedPacket;
    if (s.retainHandling > 2) return ReasonCode.ProtocolError; // [MQTT-3.8.3-5] rejected by decoder too
  }
  if (p.properties?.subscriptionIdentifier === 0) return ReasonCode.ProtocolError; // [MQTT-3.8.2-1]
  return undefined;
}

/** Per-filter SUBSCRIBE check: the reason code for a filter that cannot be granted. */
export function validateSubscriptionFilter(topicFilter: string, noLocal: boolean, limits?: TopicLimits): ReasonCode | undefined {
  const shared = parseSharedFilter(topicFilter);
  if (shared === null) return ReasonCode.TopicFilterInvalid;
  // The whole filter ($share prefix included) is capped in bytes, the filter part in levels
  if (limits && (!isTopicWithinLimits(topicFilter, limits.maxTopicFilterBytes, Number.POSITIVE_INFINITY)
    || !isTopicWithinLimits(shared ? shared.topicFilter : topicFilter, limits.maxTopicFilterBytes, limits.maxTopicLevels))) {
    return ReasonCode.TopicFilterInvalid;
  }
  if (shared === undefined) return isValidTopicFilter(topicFilter) ? undefined : ReasonCode.TopicFilterInvalid;
  // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error
  if (noLocal) return ReasonCode.ProtocolError;
  return undefined;
}

/** UNSUBSCRIBE packet-level rules. */
export function validateUnsubscribe(p: UnsubscribePacket): ReasonCode | undefined {
  if (p.packetId === 0) return ReasonCode.ProtocolError; // [MQTT-2.2.1-3] non-zero packet id
  if (p.topicFilters.length === 0) return ReasonCode.ProtocolError; // [MQTT-3.10.3-2]
  for (const f of p.topicFilters) if (isBadWireString(f)) return ReasonCode.MalformedPacket;
  return undefined;
}
