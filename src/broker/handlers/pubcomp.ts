// PUBCOMP from a client: QoS 2 delivery complete (MQTT 5 §3.7).
import type { PubCompPacket } from '../../mqtt/packet.ts';
import type { Connected } from '../context.ts';

/** PUBCOMP from a client. */
export function handlePubcomp(c: Connected, p: PubCompPacket): void {
  const outbox = c.session.outbox;
  const d = outbox.find(p.packetId);
  if (!d || d.qos !== 2) return;
  outbox.complete(d);
}
