// PUBREC from a client: first QoS 2 acknowledgement; answer PUBREL once the state is stored (MQTT 5 §3.5).
import type { PubRecPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connection } from '../connection.ts';

export function handlePubrec(conn: Connection, p: PubRecPacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const d = session.inflight.get(p.packetId);
  if (!d || d.qos !== 2) {
    // [MQTT-4.3.3-?] unknown id: PUBREL with Packet Identifier not found (5.0)
    conn.reply({ type: 'pubrel', packetId: p.packetId, reasonCode: conn.version === 5 ? ReasonCode.PacketIdentifierNotFound : 0 });
    return;
  }
  if (p.reasonCode >= 0x80) {
    // [MQTT-4.3.3-?] a failed PUBREC ends the delivery; no PUBREL follows
    broker.deliveries.complete(session, d);
    return;
  }
  if (d.state === 'pubrec') {
    conn.reply({ type: 'pubrel', packetId: p.packetId, reasonCode: 0 });
    return;
  }
  d.state = 'pubrec';
  const committed = session.persistent
    ? broker.store.transaction((tx) => tx.updateDelivery(d.id, d.packetId, 'pubrec'))
    : undefined;
  // [MQTT-4.3.3-?] outbound PUBREC state is durable before PUBREL, so a restart resumes with PUBREL
  conn.after(committed, () => conn.send({ type: 'pubrel', packetId: p.packetId, reasonCode: 0 }));
}
