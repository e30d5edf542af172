// AUTH: no enhanced authentication method is configured, so any AUTH packet is a protocol
// error [MQTT-4.12.0-6]... the client never negotiated a method (CONNECT with one is refused).
import { MqttError } from '../../mqtt/errors.ts';
import type { AuthPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connected } from '../context.ts';

/** AUTH from a client: always a protocol error here. */
export function handleAuth(c: Connected, _p: AuthPacket): void {
  if (c.version !== 5) throw new MqttError(ReasonCode.ProtocolError, 'AUTH is a 5.0 packet');
  throw new MqttError(ReasonCode.ProtocolError, 'no authentication method was negotiated');
}
