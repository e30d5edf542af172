// PINGREQ: answer PINGRESP [MQTT-3.12.4-1].
import type { Connection } from '../connection.ts';

export function handlePingreq(conn: Connection): void {
  conn.reply({ type: 'pingresp' });
}
