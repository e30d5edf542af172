// Per-connection packet dispatch with state gates: the first packet must be CONNECT, a second
// CONNECT is a protocol error, packets that arrive while CONNECT is being decided wait for it.
import { assertNever, MqttError } from '../mqtt/errors.ts';
import type { InboundPacket } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import type { Connection } from './connection.ts';
import { handleAuth } from './handlers/auth.ts';
import { handleConnect } from './handlers/connect.ts';
import { handleDisconnect } from './handlers/disconnect.ts';
import { handlePingreq } from './handlers/pingreq.ts';
import { handlePuback } from './handlers/puback.ts';
import { handlePubcomp } from './handlers/pubcomp.ts';
import { handlePublish } from './handlers/publish.ts';
import { handlePubrec } from './handlers/pubrec.ts';
import { handlePubrel } from './handlers/pubrel.ts';
import { handleSubscribe } from './handlers/subscribe.ts';
import { handleUnsubscribe } from './handlers/unsubscribe.ts';

/** Handle one decoded packet. Throws MqttError for violations that end the connection. */
export function handleIn(conn: Connection, packet: InboundPacket): void {
  if (!conn.connectSeen) {
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.type !== 'connect') throw new MqttError(ReasonCode.ProtocolError, 'first packet must be CONNECT');
    conn.connectSeen = true;
    handleConnect(conn, packet);
    return;
  }
  if (conn.state === 'new') {
    // CONNECT is still being decided: the packet keeps its place in line
    conn.after(undefined, () => {
      if (conn.state === 'connected') handleIn(conn, packet);
    });
    return;
  }
  switch (packet.type) {
    case 'connect':
      throw new MqttError(ReasonCode.ProtocolError, 'second CONNECT'); // [MQTT-3.1.0-2]
    case 'publish':
      return handlePublish(conn, packet);
    case 'puback':
      return handlePuback(conn, packet);
    case 'pubrec':
      return handlePubrec(conn, packet);
    case 'pubrel':
      return handlePubrel(conn, packet);
    case 'pubcomp':
      return handlePubcomp(conn, packet);
    case 'subscribe':
      return handleSubscribe(conn, packet);
    case 'unsubscribe':
      return handleUnsubscribe(conn, packet);
    case 'pingreq':
      return handlePingreq(conn);
    case 'disconnect':
      return handleDisconnect(conn, packet);
    case 'auth':
      return handleAuth(conn, packet);
    default:
      assertNever(packet);
  }
}
