// The handler of each packet type a connected client may send (CONNECT has its own entry point:
// it runs before there is a session). The channel dispatches through this table.
import type { InboundPacket } from '../../mqtt/packet.ts';
import type { Connected } from '../context.ts';
import { handleAuth } from './auth.ts';
import { handleDisconnect } from './disconnect.ts';
import { handlePingreq } from './pingreq.ts';
import { handlePuback } from './puback.ts';
import { handlePubcomp } from './pubcomp.ts';
import { handlePublish } from './publish.ts';
import { handlePubrec } from './pubrec.ts';
import { handlePubrel } from './pubrel.ts';
import { handleSubscribe } from './subscribe.ts';
import { handleUnsubscribe } from './unsubscribe.ts';

/** Packet types handled once connected. */
export type ConnectedPacketType = Exclude<InboundPacket['type'], 'connect'>;

/** One handler per packet type; a new packet type fails to compile until it has one here. */
export type HandlerTable = { readonly [K in ConnectedPacketType]: (c: Connected, p: Extract<InboundPacket, { type: K }>) => void };

/** The handlers of packets after CONNECT, by packet type. */
export const handlers: HandlerTable = {
  publish: handlePublish,
  puback: handlePuback,
  pubrec: handlePubrec,
  pubrel: handlePubrel,
  pubcomp: handlePubcomp,
  subscribe: handleSubscribe,
  unsubscribe: handleUnsubscribe,
  pingreq: handlePingreq,
  disconnect: handleDisconnect,
  auth: handleAuth,
};

export { handleConnect } from './connect.ts';
