// PUBACK from a client: QoS 1 delivery complete (MQTT 5 §3.4).
import type { PubAckPacket } from '../../mqtt/packet.ts';
import type { Connected } from '../context.ts';

/** PUBACK from a client. */
export function handlePuback(c: Connected, p: PubAckPacket): void {
  const outbox = c.session.outbox;
  const d = outbox.find(p.packetId);
  // An unknown id is ignored: it may belong to a delivery discarded or already acknowledged.
  if (!d || d.qos !== 1) return;
  outbox.complete(d);
}
