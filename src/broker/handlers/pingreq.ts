// PINGREQ: answer PINGRESP [MQTT-3.12.4-1].
import type { PingreqPacket } from '../../mqtt/packet.ts';
import type { Connected } from '../context.ts';

/** PINGREQ from a client. */
export function handlePingreq(c: Connected, _p: PingreqPacket): void {
  c.out.reply({ type: 'pingresp' });
}
