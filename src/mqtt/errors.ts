// MqttError: a protocol violation that ends the connection. Thrown by validation and handlers,
// caught only in the channel, which turns it into DISCONNECT (5.0) or a plain close (3.1.1).
import { ReasonCode, reasonCodeName } from './reason-code.ts';

/** A protocol violation: the connection must close, with `reasonCode` sent first on 5.0. */
export class MqttError extends Error {
  readonly reasonCode: ReasonCode;
  constructor(reasonCode: ReasonCode, message?: string) {
    super(message ?? reasonCodeName(reasonCode));
    this.name = 'MqttError';
    this.reasonCode = reasonCode;
  }
}

/** Assert exhaustiveness of a switch over a discriminated union. */
export function assertNever(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
