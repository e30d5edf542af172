// The publish path: route (fan-out plan, queue limits, window reservations) → commit (one unit of
// work for the message, its persistent deliveries and the retained change) → dispatch (hand the
// deliveries to the sessions' outboxes). Also holds back publishers while the store is behind.
import type { Message } from '../mqtt/packet.ts';
import { QueuedDelivery, toDeliveryRecord, type Delivery, type EncodeCache } from './delivery.ts';
import { EventType, type EventBus } from './events.ts';
import type { Hub, Hubs } from './hub.ts';
import type { IdSource } from './ids.ts';
import type { BrokerOptions } from './options.ts';
import { Dispatch } from './outbox.ts';
import type { Clock, DeliveryRecord, Logger, Store, UnitOfWork } from './ports.ts';
import { planRoute, type Target } from './router.ts';
import type { Session } from './session.ts';
import type { MessageStats } from './stats.ts';

/** A publisher that can be held back while the store catches up (an MQTT connection). */
export interface Throttleable {
  readonly isOpen: boolean;
  /** Reading is paused (or acknowledgements held) while the store catches up. */
  readonly readPaused: boolean;
  /** The transport can stop reading (TCP); a WebSocket cannot, so only its replies are held. */
  readonly canPauseReading: boolean;
  /** Stop reading (or hold acknowledgements) until `drained` resolves. */
  pauseReading(drained: Promise<void>): void;
  resumeReading(): void;
}

/** How a route's commit is retried. */
export interface RouteOptions {
  /** Keep retrying a failed commit while this stays open (3.1.1 publishers: hold the acknowledgement). */
  retryWhileOpen?: { readonly isOpen: boolean };
  /** Deliver to these instead of the subscribers of the topic (server messages to chosen sessions). */
  targets?: Target[];
  /** Leave out the sessions this refuses (REST `excluded` and `filter`). */
  accept?: (session: Session) => boolean;
  /**
   * The publisher's connection: its consecutive units may be committed as one (Store.transaction's
   * `fate`). They are all its own, so one refused message fails only its own publisher's neighbours.
   */
  fate?: object;
}

/** What the publish path uses. */
export interface PublishPathDeps {
  readonly options: BrokerOptions;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly hubs: Hubs;
  readonly ids: IdSource;
  readonly events: EventBus;
  readonly stats: MessageStats;
}

/** True for a StoreError whose rows the database refused (StoreError.refused): retrying cannot succeed. */
function isRefused(e: unknown): boolean {
  return (e as { refused?: unknown } | null)?.refused === true;
}

/** True if the delivery of record `r` is still in flight (not acknowledged yet). */
function stillInFlight(pairs: readonly Routed[], r: DeliveryRecord): boolean {
  for (const p of pairs) if (p.delivery.id === r.id) return p.session.outbox.find(p.delivery.packetId) === p.delivery;
  return false;
}

/** One session's delivery of a routed message, and how it leaves (a class: it lives until the commit). */
class Routed {
  constructor(readonly session: Session, readonly delivery: Delivery, readonly how: Dispatch) {}
}

/** A routed message ready to be committed and dispatched (a class: no closures per message). */
export class RoutePlan {
  /** Resolves when the durable part is committed; undefined when nothing had to be stored. */
  committed: Promise<void> | undefined = undefined;
  readonly #hub: Hub;
  readonly #message: Message;
  readonly #retain: boolean;
  readonly #pairs: Routed[];
  #cache: EncodeCache | undefined;

  constructor(hub: Hub, message: Message, retain: boolean, pairs: Routed[], cache: EncodeCache | undefined) {
    this.#hub = hub;
    this.#message = message;
    this.#retain = retain;
    this.#pairs = pairs;
    this.#cache = cache;
    // Counted against the hub's retained caps until it is stored or abandoned (pipelined retained
    // publishes would all pass a check of the committed state)
    if (retain && message.payload.length > 0) {
      hub.retainedPendingCount++;
      hub.retainedPendingBytes += message.payload.length;
    }
  }

  /** The retained message of this plan is no longer pending (stored or abandoned). */
  #settleRetained(): void {
    if (!this.#retain || this.#message.payload.length === 0) return;
    this.#hub.retainedPendingCount--;
    this.#hub.retainedPendingBytes -= this.#message.payload.length;
  }

  /** Sessions that will receive the message. */
  get matched(): number {
    return this.#pairs.length;
  }

  /** Hand the message to the sessions (call after `committed` resolved). */
  dispatch(): void {
    const message = this.#message;
    this.#settleRetained();
    if (this.#retain) {
      if (message.payload.length > 0) this.#hub.retained.set(message.topicName, message);
      else this.#hub.retained.delete(message.topicName);
    }
    const pairs = this.#pairs;
    const cache = pairs.length > 1 ? (this.#cache ??= new Map()) : this.#cache;
    for (const p of pairs) p.session.outbox.dispatch(p.delivery, p.how, cache);
  }

  /** Undo what routing reserved, when `committed` failed: give back the window slots of deliveries that never left. */
  abandon(): void {
    this.#settleRetained();
    for (const p of this.#pairs) p.session.outbox.abandon(p.delivery, p.how);
  }
}

/** Route, commit and dispatch of messages, from clients, wills and the server. */
export class PublishPath {
  readonly #deps: PublishPathDeps;
  /** Publishers not read from (or whose acknowledgements are held) until the store catches up. */
  readonly #throttled = new Set<Throttleable>();
  #backlogDrained: Promise<void> | undefined;

  constructor(deps: PublishPathDeps) {
    this.#deps = deps;
  }

  /** Would storing `message` as retained go over its hub's retained caps (messages being committed included)? */
  isOverRetainedCaps(message: Pick<Message, 'hub' | 'topicName' | 'payload'>): boolean {
    const o = this.#deps.options;
    return this.#deps.hubs.get(message.hub).retainedOverQuota(message.topicName, message.payload.length, o.maxRetainedMessages, o.maxRetainedBytes);
  }

  /**
   * Plan the fan-out of a message, including the retained-message update. Deliveries to
   * persistent sessions at QoS > 0, retained changes and `extra` go into one unit of work.
   */
  route(message: Message, extra?: (tx: UnitOfWork) => void, opts: RouteOptions = {}): RoutePlan {
    const { hubs, ids, store, options, events, logger, stats } = this.#deps;
    const hub = hubs.get(message.hub);
    const targets = opts.targets ?? planRoute(hub, message);
    const accept = opts.accept;
    const pairs: Routed[] = [];
    let cache: EncodeCache | undefined; // created once a delivery is sent (fan-out shares encodings)
    // QoS 1 to an online persistent session may leave before the commit (Outbox.reserveForCommit),
    // unless the store is known to be failing: then nothing is sent ahead of a commit.
    const sendEarly = store.healthy;
    let records: DeliveryRecord[] | undefined;
    let sentAhead = false;
    for (const t of targets) {
      const s = t.session;
      if (accept && !accept(s)) continue;
      const outbox = s.outbox;
      if (t.qos === 0 && !s.isConnected) continue; // QoS 0 is not queued for offline sessions
      // Deliveries routed but still waiting for their commit count too (a burst would pass the limits otherwise)
      if (outbox.isFull(message.payload.length)) {
        // Never silent: counted, logged and audited (first drop, then every 1000th)
        const dropped = ++outbox.droppedCount;
        stats.droppedQueueFull++;
        if (dropped === 1 || dropped % 1000 === 0) {
          const queued = outbox.queuedCount;
          const queuedBytes = outbox.queuedBytes;
          logger.warn({ clientId: s.clientId, hub: hub.name, dropped, queued, queuedBytes }, 'session queue full; message dropped');
          events.emit({ type: EventType.QueueOverflow, hub: hub.name, clientId: s.clientId, dropped, topicName: message.topicName, queued, queuedBytes });
        }
        continue;
      }
      const d = new QueuedDelivery(ids.next(), message, t.qos, t.retain, t.subscriptionIds, t.shareKey);
      let how: Dispatch = Dispatch.Plain;
      if (s.persistent && d.qos > 0) {
        // Its row goes into this unit; online with room in its window, it takes its packet id now
        // so that no second commit is needed before the PUBLISH leaves.
        how = outbox.reserveForCommit(d, sendEarly);
        const rec = toDeliveryRecord(s, d);
        if (how === Dispatch.Sent) {
          // (Sent below, once the unit holding its row is submitted: anything the send itself
          // does to the row, such as discarding a message too large for the client, comes after.)
          rec.sentAhead = true;
          sentAhead = true;
        }
        (records ??= []).push(rec);
      }
      pairs.push(new Routed(s, d, how));
    }
    const retain = message.retain && options.retainAvailable;
    let committed: Promise<void> | undefined;
    if (records || retain || extra) {
      const rows = records;
      let attempt = 0;
      committed = this.#commit((tx) => {
        // A retry (3.1.1 held acknowledgement) must not store again a delivery sent ahead whose
        // PUBACK has come since: its row would never be deleted
        const now = attempt++ === 0 || !rows ? rows : rows.filter((r) => !r.sentAhead || stillInFlight(pairs, r));
        if (now?.length) tx.insertMessage(message);
        if (retain) {
          // [MQTT-3.3.1-5] store, or [MQTT-3.3.1-6] a zero-byte payload removes the retained message
          if (message.payload.length > 0) tx.putRetained(message);
          else tx.deleteRetained(hub.name, message.topicName);
        }
        if (now?.length) tx.enqueueDeliveries(now);
        extra?.(tx);
      }, opts.retryWhileOpen, opts.fate);
    }
    if (sentAhead) {
      if (pairs.length > 1) cache = new Map();
      for (const p of pairs) if (p.how === Dispatch.Sent) p.session.outbox.sendReserved(p.delivery, cache);
    }
    const plan = new RoutePlan(hub, message, retain, pairs, cache);
    plan.committed = committed;
    return plan;
  }

  /**
   * Commit a unit of work; with `holder`, try again (250 ms, doubling to 2 s) while it stays open:
   * an acknowledgement held back until the store answers again. The first attempt is the plain
   * commit (no extra promise on the message path).
   */
  #commit(build: (tx: UnitOfWork) => void, holder: { readonly isOpen: boolean } | undefined, fate: object | undefined): Promise<void> {
    const { store, clock } = this.#deps;
    if (!holder) return store.transaction(build, fate);
    // (a retry is a unit of its own)
    return store.transaction(build, fate).catch(async (first: unknown) => {
      let err = first;
      // Rows the database refused are refused again: fail the request at once (never retried)
      for (let delayMs = 250; holder.isOpen && !isRefused(err); delayMs = Math.min(delayMs * 2, 2000)) {
        await new Promise<void>((resolve) => clock.setTimeout(resolve, delayMs));
        if (!holder.isOpen) break;
        try {
          await store.transaction(build);
          return;
        } catch (e) {
          err = e;
        }
      }
      throw err;
    });
  }

  /** Route, commit and dispatch a message; resolves with the number of receiving sessions. */
  async publish(message: Message, extra?: (tx: UnitOfWork) => void, opts?: RouteOptions): Promise<number> {
    const plan = this.route(message, extra, opts);
    if (plan.committed) {
      try {
        await plan.committed;
      } catch (err) {
        plan.abandon();
        throw err;
      }
    }
    plan.dispatch();
    return plan.matched;
  }

  /**
   * Called after a client's publish that waits for a commit: while the store's backlog is above its
   * limit, stop reading from that client (or hold its acknowledgements) until the backlog is down
   * to half the limit, instead of buffering what it sends without bound. O(1) when below the limit.
   */
  throttleIfBehind(publisher: Throttleable): void {
    const { store, options: o, logger } = this.#deps;
    if (store.backlogBytes <= o.maxStoreBacklogBytes && store.backlogUnits <= o.maxStoreBacklogUnits) return;
    if (this.#throttled.has(publisher) || !publisher.isOpen) return;
    if (!this.#backlogDrained) {
      logger.warn({ units: store.backlogUnits, bytes: store.backlogBytes }, 'PostgreSQL writer behind; reading from publishers paused');
      this.#backlogDrained = store.whenBacklogBelow(o.maxStoreBacklogUnits >> 1, Math.floor(o.maxStoreBacklogBytes / 2)).then(() => {
        this.#backlogDrained = undefined;
        logger.info({ connections: this.#throttled.size }, 'PostgreSQL writer caught up; reading from publishers resumed');
        for (const c of this.#throttled) c.resumeReading();
        this.#throttled.clear();
      });
    }
    this.#throttled.add(publisher);
    publisher.pauseReading(this.#backlogDrained);
  }

  /**
   * The store's backlog is over its byte limit, or over four times its unit limit. (Just over the
   * unit limit, units a publisher cannot be slowed down for but whose number is bounded otherwise,
   * such as retained QoS 0 publishes counted by the hub's retained caps, may still be taken.)
   */
  get farBehind(): boolean {
    const { store, options } = this.#deps;
    return store.backlogBytes > options.maxStoreBacklogBytes || store.backlogUnits > 4 * options.maxStoreBacklogUnits;
  }

  /** A publisher is gone: forget it. */
  forget(publisher: Throttleable): void {
    this.#throttled.delete(publisher);
  }
}
