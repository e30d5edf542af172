// PUBCOMP from a client: QoS 2 delivery complete (MQTT 5 §3.7).
import type { PubCompPacket } from '../../mqtt/packet.ts';
import type { Connection } from '../connection.ts';

export function handlePubcomp(conn: Connection, p: PubCompPacket): void {
  const session = conn.session!;
  const d = session.inflight.get(p.packetId);
  if (!d || d.qos !== 2) return;
  conn.broker.deliveries.complete(session, d);
}
