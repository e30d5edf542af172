// Everything the engine needs from the world, as types only, plus the Clock port.
export type { Store, UnitOfWork, SessionRecord, SubscriptionRecord, DeliveryRecord, DeliveryState, WillRecord, StoredState, IdBlock, AuditEvent } from '../store/store.ts';
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

/** The longest delay a Node timer honours (2^31-1 ms, ≈ 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock; timers do not keep the process alive. A timeout longer than MAX_TIMER_MS is
 * re-armed in steps, so it never fires early. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    if (!(ms > MAX_TIMER_MS)) {
      const t = setTimeout(fn, ms);
      t.unref();
      return { cancel: () => clearTimeout(t) };
    }
    return wakeAt(systemClock, Date.now() + ms, fn);
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, Math.min(ms, MAX_TIMER_MS));
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

/**
 * Call `fn` once `clock.now()` has reached `atMs` (an absolute deadline, e.g. computed from stored
 * times). The timer is only a wake-up: it is armed for at most MAX_TIMER_MS at a time and, when it
 * fires before the deadline (a long delay, or a clock that moved), armed again for what remains.
 * Always asynchronous, even for a deadline already past.
 */
export function wakeAt(clock: Clock, atMs: number, fn: () => void): Timer {
  let current: Timer | undefined;
  let cancelled = false;
  const wake = (): void => {
    current = undefined;
    if (cancelled) return;
    const remainingMs = atMs - clock.now();
    if (remainingMs > 0) {
      current = clock.setTimeout(wake, Math.min(remainingMs, MAX_TIMER_MS));
      return;
    }
    fn();
  };
  current = clock.setTimeout(wake, Math.min(Math.max(atMs - clock.now(), 0), MAX_TIMER_MS));
  return {
    cancel: () => {
      cancelled = true;
      current?.cancel();
      current = undefined;
    },
  };
}

/** Structured logger subset the engine uses (pino-compatible). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}
