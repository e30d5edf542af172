// Everything the engine needs from the world, as types only, plus the Clock port.
export type { Store, UnitOfWork, SessionRecord, SubscriptionRecord, DeliveryRecord, DeliveryState, WillRecord, StoredState } from '../store/store.ts';
export type { Authenticator, Authorizer, Principal, ConnectContext, AuthResult } from '../auth/auth.ts';
export type { ByteChannel, ChannelSink, AcceptInfo } from '../transport/byte-channel.ts';

/** A cancellable timer handle. */
export interface Timer {
  cancel(): void;
}

/** Time and timers, injected so tests can control them. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
}

/** The real clock; timers do not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

/** Structured logger subset the engine uses (pino-compatible). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}
