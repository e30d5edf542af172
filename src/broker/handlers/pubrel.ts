// PUBREL from a client: release an inbound QoS 2 packet id and answer PUBCOMP (MQTT 5 §3.6).
import type { PubRelPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connected } from '../context.ts';

/** PUBREL from a client. */
export function handlePubrel(c: Connected, p: PubRelPacket): void {
  const session = c.session;
  const known = session.inboundQos2.has(p.packetId);
  const rc = known || c.version === 4 ? ReasonCode.Success : ReasonCode.PacketIdentifierNotFound;
  // A persistent session forgets the id once its delete is committed (SessionManager.releaseInbound).
  // A failed commit ends the connection (no PUBCOMP): the client sends PUBREL again on its next connection.
  const committed = c.engine.sessions.releaseInbound(session, p.packetId);
  if (committed === undefined) {
    c.out.after(undefined, () => c.out.send({ type: 'pubcomp', packetId: p.packetId, reasonCode: rc }));
    return;
  }
  c.out.after(committed, () => {
    session.inboundQos2.delete(p.packetId);
    c.out.send({ type: 'pubcomp', packetId: p.packetId, reasonCode: rc });
  }, undefined, true); // forget the id once it is committed even if the connection has gone meanwhile
}
