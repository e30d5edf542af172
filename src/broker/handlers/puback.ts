// PUBACK from a client: QoS 1 delivery complete (MQTT 5 §3.4).
import type { PubAckPacket } from '../../mqtt/packet.ts';
import type { Connection } from '../connection.ts';

export function handlePuback(conn: Connection, p: PubAckPacket): void {
  const session = conn.session!;
  const d = session.inflight.get(p.packetId);
  // An unknown id is ignored: it may belong to a delivery discarded or already acknowledged.
  if (!d || d.qos !== 1) return;
  conn.broker.deliveries.complete(session, d);
}
