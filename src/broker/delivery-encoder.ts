// The PUBLISH of a delivery, encoded for one client: its protocol version, outbound topic aliases
// and maximum packet size. Fan-out shares one encoding per variant through an EncodeCache.
import { encodePublish, patchPublish, type PublishProperties } from '../mqtt/codec.ts';
import type { ProtocolVersion } from '../mqtt/packet.ts';
import type { OutboundAliases } from '../mqtt/session-state.ts';
import type { Delivery, EncodeCache } from './delivery.ts';
import type { Clock } from './ports.ts';

/**
 * Encode (or take from `cache`) the PUBLISH of `d`, with its packet id and DUP. Undefined when it
 * is larger than `maxBytes` (the client's Maximum Packet Size): nothing is recorded then. A new
 * topic alias counts from here on, so the caller must send the bytes it gets.
 */
export function encodeDelivery(
  d: Delivery, dup: boolean, cache: EncodeCache | undefined, version: ProtocolVersion, aliases: OutboundAliases | undefined,
  maxBytes: number, clock: Clock,
): Buffer | undefined {
  const m = d.message;
  let props: PublishProperties | undefined;
  let topicName = m.topicName;
  let key: string | undefined;
  let newAlias: number | undefined;
  if (version === 5) {
    props = m.properties ? { ...m.properties } : {};
    if (m.expiresAtMs !== undefined) props.messageExpiryInterval = Math.max(1, Math.ceil((m.expiresAtMs - clock.now()) / 1000));
    if (d.subscriptionIds) props.subscriptionIdentifier = d.subscriptionIds.length === 1 ? d.subscriptionIds[0]! : d.subscriptionIds;
    const alias = aliases?.lookup(m.topicName);
    if (alias) {
      props.topicAlias = alias.alias;
      if (alias.isNew) newAlias = alias.alias;
      else topicName = '';
    } else if (cache) {
      key = `5|${d.qos}|${d.retain ? 1 : 0}|${props.messageExpiryInterval ?? ''}|${d.subscriptionIds?.join(',') ?? ''}`;
    }
  } else if (cache) {
    key = `4|${d.qos}|${d.retain ? 1 : 0}`;
  }
  let bytes: Buffer | undefined;
  if (key !== undefined) {
    const template = cache!.get(key);
    if (template) {
      bytes = d.qos === 0 ? template : Buffer.from(template);
    }
  }
  if (!bytes) {
    bytes = encodePublish(topicName, m.payload, d.qos, d.retain, false, 0, props, version === 5);
    // The first user sends the template itself (its packet id and DUP are patched in place);
    // later users copy it and patch their copy, which rewrites both fields
    if (key !== undefined) cache!.set(key, bytes);
  }
  if (d.qos > 0) patchPublish(bytes, d.packetId, dup);
  if (bytes.length > maxBytes) return undefined;
  if (newAlias !== undefined) aliases!.record(m.topicName, newAlias);
  return bytes;
}
