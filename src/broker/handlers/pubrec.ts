// PUBREC from a client: first QoS 2 acknowledgement; answer PUBREL once the state is stored (MQTT 5 §3.5).
import type { PubRecPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connected } from '../context.ts';

/** PUBREC from a client. */
export function handlePubrec(c: Connected, p: PubRecPacket): void {
  const outbox = c.session.outbox;
  const d = outbox.find(p.packetId);
  if (!d || d.qos !== 2) {
    // [MQTT-4.3.3-?] unknown id: PUBREL with Packet Identifier not found (5.0)
    c.out.reply({ type: 'pubrel', packetId: p.packetId, reasonCode: c.version === 5 ? ReasonCode.PacketIdentifierNotFound : 0 });
    return;
  }
  if (p.reasonCode >= 0x80) {
    // [MQTT-4.3.3-?] a failed PUBREC ends the delivery; no PUBREL follows
    outbox.complete(d);
    return;
  }
  if (d.state === 'pubrec') {
    c.out.reply({ type: 'pubrel', packetId: p.packetId, reasonCode: 0 });
    return;
  }
  // [MQTT-4.3.3-?] outbound PUBREC state is durable before PUBREL, so a restart resumes with PUBREL
  const committed = outbox.released(d);
  c.out.after(committed, () => c.out.send({ type: 'pubrel', packetId: p.packetId, reasonCode: 0 }));
}
