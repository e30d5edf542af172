// Per-connection packet dispatch with state gates: the first packet must be CONNECT, a second
// CONNECT is a protocol error, packets that arrive while CONNECT is being decided wait for it;
// after that, the packet's handler from the table gets the connected context.
import { MqttError } from '../mqtt/errors.ts';
import type { InboundPacket } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import type { ChannelHost, Connected } from './context.ts';
import { handleConnect, handlers } from './handlers/index.ts';

/** Handle one decoded packet. Throws MqttError for violations that end the connection. */
export function handleIn(conn: ChannelHost, packet: InboundPacket): void {
  if (!conn.connectSeen) {
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.type !== 'connect') throw new MqttError(ReasonCode.ProtocolError, 'first packet must be CONNECT');
    conn.connectSeen = true;
    handleConnect(conn, packet);
    return;
  }
  const connected = conn.connected;
  if (conn.state === 'new' || connected === undefined) {
    waitForConnect(conn, packet, 0);
    return;
  }
  if (packet.type === 'connect') throw new MqttError(ReasonCode.ProtocolError, 'second CONNECT'); // [MQTT-3.1.0-2]
  (handlers[packet.type] as (c: Connected, p: InboundPacket) => void)(connected, packet);
}

/** Steps a packet may be put back behind while its CONNECT is decided (authentication, session lock, session commit). */
const MAX_CONNECT_STEPS = 16;

/**
 * CONNECT is still being decided: the packet keeps its place in line. Deciding may queue further
 * steps (an asynchronous authenticator, then the session's commit), each after this packet's
 * turn: the packet goes back behind them until the connection is connected, or closed.
 */
function waitForConnect(conn: ChannelHost, packet: InboundPacket, steps: number): void {
  conn.after(undefined, () => {
    if (conn.state === 'connected') handleIn(conn, packet);
    else if (conn.state === 'new' && steps < MAX_CONNECT_STEPS) waitForConnect(conn, packet, steps + 1);
    else if (conn.state === 'new') throw new Error('CONNECT still undecided after every step it queued');
  });
}
