// Admission of new connections before anything is read from them: the total and per-address
// connection caps and a per-address token bucket for the connection rate. Refusals are logged
// (first, then every 1000th per limit), never a flood.
import type { BrokerOptions } from './options.ts';
import type { Clock, Logger } from './ports.ts';

/** Per-address token bucket for the connection rate. */
interface Bucket {
  tokens: number;
  atMs: number;
}

/** The same address in the form both transports agree on (an IPv4-mapped IPv6 address as IPv4). */
export function addressKey(remoteAddress: string): string {
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
}

/** Connection counts per address and connection-rate buckets. */
export class Admission {
  readonly #options: BrokerOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  /** Open connections per remote address. */
  readonly #perAddress = new Map<string, number>();
  #total = 0;
  readonly #buckets = new Map<string, Bucket>();
  #lastBucketPruneMs = 0;
  /** Connections refused, by limit (logged first and every 1000th). */
  readonly #refused = new Map<string, number>();

  constructor(options: BrokerOptions, clock: Clock, logger: Logger) {
    this.#options = options;
    this.#clock = clock;
    this.#logger = logger;
  }

  /**
   * Before anything is read from a new connection (a TCP accept, a WebSocket upgrade): false if it
   * would exceed the connections in total or from its address, or its address's connection rate
   * (token bucket). Takes a token when it says yes.
   */
  admit(remoteAddress: string): boolean {
    const opts = this.#options;
    const address = addressKey(remoteAddress);
    const over = this.#overLimits(address);
    if (over) return this.#refuse(address, over);
    const now = this.#clock.now();
    let bucket = this.#buckets.get(address);
    if (!bucket) {
      bucket = { tokens: opts.connectionBurst, atMs: now };
      this.#buckets.set(address, bucket);
    } else {
      bucket.tokens = Math.min(opts.connectionBurst, bucket.tokens + ((now - bucket.atMs) / 1000) * opts.connectionRatePerSec);
      bucket.atMs = now;
    }
    if (bucket.tokens < 1) return this.#refuse(address, 'connection rate');
    bucket.tokens -= 1;
    return true;
  }

  /**
   * A connection is opening: false (refused) if it would exceed the caps (checked again here:
   * WebSocket upgrades admitted together may have opened meanwhile); else it is counted.
   */
  open(remoteAddress: string): boolean {
    const address = addressKey(remoteAddress);
    const over = this.#overLimits(address);
    if (over) {
      this.#refuse(address, over);
      return false;
    }
    this.#total++;
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    return true;
  }

  /** A counted connection has closed. */
  closed(remoteAddress: string): void {
    const address = addressKey(remoteAddress);
    this.#total--;
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n > 0) this.#perAddress.set(address, n);
    else this.#perAddress.delete(address);
  }

  #overLimits(address: string): string | undefined {
    if (this.#total >= this.#options.maxConnections) return 'connections in total';
    if ((this.#perAddress.get(address) ?? 0) >= this.#options.maxConnectionsPerAddress) return 'connections per address';
    return undefined;
  }

  #refuse(address: string, limit: string): false {
    const n = (this.#refused.get(limit) ?? 0) + 1;
    this.#refused.set(limit, n);
    // A flood must not become a flood of log lines: the first refusal, then every 1000th
    if (n === 1 || n % 1000 === 0) {
      this.#logger.warn({ remoteAddress: address, limit, refused: n, connections: this.#total }, 'connection refused at accept');
    }
    return false;
  }

  /** Forget token buckets that have refilled: they hold nothing an absent entry would not. */
  prune(): void {
    const now = this.#clock.now();
    if (now - this.#lastBucketPruneMs < 10_000) return;
    this.#lastBucketPruneMs = now;
    const opts = this.#options;
    for (const [address, b] of this.#buckets) {
      if (b.tokens + ((now - b.atMs) / 1000) * opts.connectionRatePerSec >= opts.connectionBurst) this.#buckets.delete(address);
    }
  }
}
