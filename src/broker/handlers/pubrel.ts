// PUBREL from a client: release an inbound QoS 2 packet id and answer PUBCOMP (MQTT 5 §3.6).
import type { PubRelPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connection } from '../connection.ts';

export function handlePubrel(conn: Connection, p: PubRelPacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const known = session.inboundQos2.delete(p.packetId);
  const rc = known || conn.version === 4 ? ReasonCode.Success : ReasonCode.PacketIdentifierNotFound;
  const committed = known && session.persistent
    ? broker.store.transaction((tx) => tx.deleteInboundQos2(session.hub.name, session.clientId, p.packetId))
    : undefined;
  conn.after(committed, () => conn.send({ type: 'pubcomp', packetId: p.packetId, reasonCode: rc }));
}
