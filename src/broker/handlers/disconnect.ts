// DISCONNECT from a client (MQTT 5 §3.14): 0x00 discards the will, 0x04 publishes it; 5.0 may
// set a new Session Expiry Interval, but not from 0 to non-zero.
import { MqttError } from '../../mqtt/errors.ts';
import type { DisconnectPacket } from '../../mqtt/packet.ts';
import { ReasonCode } from '../../mqtt/reason-code.ts';
import type { Connected } from '../context.ts';

/** DISCONNECT from a client. */
export function handleDisconnect(c: Connected, p: DisconnectPacket): void {
  c.out.after(undefined, () => {
    const session = c.session;
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      // §3.14.2.2.2 (no normative id): a session that had expiry 0 at CONNECT cannot be given one now;
      // the DISCONNECT is not valid, so the will stays and the session ends as if the network failed
      if (session.expiryIntervalSec === 0 && expiry > 0) {
        throw new MqttError(ReasonCode.ProtocolError, 'session expiry interval was 0 at CONNECT');
      }
      session.expiryIntervalSec = Math.min(expiry, c.engine.options.maxSessionExpirySec);
    }
    // [MQTT-3.1.2-10] normal disconnection removes the will; 0x04 asks for it to be published
    c.out.closeByClient(p.reasonCode, p.reasonCode !== ReasonCode.DisconnectWithWillMessage);
  });
}
