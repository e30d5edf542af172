// A manual Clock for unit tests. Its setTimeout behaves like Node's: a delay above 2^31-1 ms (or
// below 1 ms) fires after 1 ms, so code that hands it a long delay directly is caught.
import { MAX_TIMER_MS, type Clock, type Timer } from '../../src/broker/ports.ts';

interface FakeTimer { at: number; fn: () => void; cancelled: boolean; everyMs: number | undefined }

export class FakeClock implements Clock {
  #now: number;
  #timers: FakeTimer[] = [];
  /** Every delay a timeout was armed with. */
  readonly armed: number[] = [];

  constructor(now = 1_700_000_000_000) {
    this.#now = now;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    this.armed.push(ms);
    return this.#add(fn, ms > MAX_TIMER_MS || !(ms >= 1) ? 1 : ms, undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    const every = ms > MAX_TIMER_MS || !(ms >= 1) ? 1 : ms;
    return this.#add(fn, every, every);
  }

  #add(fn: () => void, delay: number, everyMs: number | undefined): Timer {
    const t: FakeTimer = { at: this.#now + delay, fn, cancelled: false, everyMs };
    this.#timers.push(t);
    return { cancel: () => { t.cancelled = true; } };
  }

  /** Timeouts and intervals not cancelled nor fired. */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Move time forward by `ms`, firing due timers in time order (intervals as often as they fall due). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let due: FakeTimer | undefined;
      for (const t of this.#timers) if (!t.cancelled && t.at <= end && (!due || t.at < due.at)) due = t;
      if (!due) break;
      this.#now = Math.max(this.#now, due.at);
      if (due.everyMs === undefined) {
        this.#timers.splice(this.#timers.indexOf(due), 1);
      } else {
        // An interval that would fire more than a few thousand times is moved to its last due time
        const skipped = Math.floor((end - due.at) / due.everyMs);
        due.at += (skipped > 1000 ? skipped : 1) * due.everyMs;
      }
      due.fn();
    }
    this.#now = end;
  }

  /** Step the wall clock without firing anything. */
  jump(ms: number): void {
    this.#now += ms;
  }
}
