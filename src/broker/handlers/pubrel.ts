// PUBREL from a client: release an inbound QoS 2 packet id and answer PUBCOMP (MQTT 5 §3.6).
import type { PubRelPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connection } from '../connection.ts';

export function handlePubrel(conn: Connection, p: PubRelPacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const ids = session.inboundQos2;
  const known = ids.has(p.packetId);
  const rc = known || conn.version === 4 ? ReasonCode.Success : ReasonCode.PacketIdentifierNotFound;
  if (!known || !session.persistent) {
    ids.delete(p.packetId);
    conn.after(undefined, () => conn.send({ type: 'pubcomp', packetId: p.packetId, reasonCode: rc }));
    return;
  }
  // The id is forgotten only once its delete is committed: until then a retransmitted PUBREL still
  // finds it (and deletes the row again), and a failed commit leaves memory and store agreeing, so
  // a restart cannot bring back an id the client believes released. A failed commit ends the
  // connection (Connection.fail, no PUBCOMP): the client sends PUBREL again on its next connection.
  const committed = broker.store.transaction((tx) => tx.deleteInboundQos2(session.hub.name, session.clientId, p.packetId));
  conn.after(committed, () => {
    ids.delete(p.packetId);
    conn.send({ type: 'pubcomp', packetId: p.packetId, reasonCode: rc });
  }, undefined, true); // forget the id once it is committed even if the connection has gone meanwhile
}
