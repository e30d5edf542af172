// Outbox: a session's outbound side and its invariants, in one place: the FIFO of queued
// deliveries, the in-flight window (packet ids), the reservations routing makes while a commit is
// pending, and the pump that sends what the attached link's window and buffer allow. It reaches
// the peer only through SessionLink, and the store only for the rows of its own deliveries.
import { PacketIdAllocator } from '../mqtt/session-state.ts';
import type { BrokerOptions } from './options.ts';
import type { Clock, Logger, Store } from './ports.ts';
import { DeliveryQueue, type Delivery, type DeliveryOwner, type EncodeCache } from './delivery.ts';
import { EventType, type EventBus } from './events.ts';
import type { SessionLink } from './session-link.ts';
import type { MessageStats } from './stats.ts';

/** Engine services every outbox shares (one object for all sessions). */
export interface OutboxServices {
  readonly store: Store;
  readonly clock: Clock;
  readonly options: BrokerOptions;
  readonly logger: Logger;
  readonly events: EventBus;
  /** Counters across all sessions. */
  readonly stats: MessageStats;
}

/** The session an outbox belongs to, as far as its rows are concerned. */
export interface OutboxOwner extends DeliveryOwner {
  /** Stored durably (its deliveries have rows). */
  readonly persistent: boolean;
}

/** Something that feeds the outbox more deliveries as it empties (a retained replay). */
export interface OutboxFeed {
  /** Queue the next page if there is room; true if deliveries were queued now. */
  refill(outbox: Outbox): boolean;
}

/** What routing did with one delivery, so dispatch (after the commit) and abandon (if it failed) can finish it. */
export const Dispatch = {
  /** Queue it (and send what the window allows). */
  Plain: 0,
  /** As Plain, and counted among the deliveries waiting for their commit (not reserved). */
  Pending: 1,
  /** Reserved at routing; sent after the commit. */
  Held: 2,
  /** Reserved and already sent at routing. */
  Sent: 3,
} as const;
export type Dispatch = (typeof Dispatch)[keyof typeof Dispatch];

/** True if the message of `d` has expired [MQTT-3.3.2-5]. */
function isExpired(d: Delivery, now: number): boolean {
  return d.message.expiresAtMs !== undefined && d.message.expiresAtMs <= now;
}

/** The outbound deliveries of one session. */
export class Outbox {
  readonly #services: OutboxServices;
  readonly #owner: OutboxOwner;
  /** The connection (or other front end) attached to the session, if any. */
  link: SessionLink | undefined = undefined;
  // The containers are created on first use: an idle subscriber never needs them, and they are
  // most of what an idle connection would otherwise cost.
  #inflight: Map<number, Delivery> | undefined;
  #queue: DeliveryQueue | undefined;
  #packetIds: PacketIdAllocator | undefined;
  /** Deliveries routed here whose commit is pending and that were not reserved: until they are
   * queued, later messages must not overtake them by reserving a window slot. */
  #pending = 0;
  /** Payload bytes of the `#pending` deliveries (they count against maxQueuedBytes). */
  #pendingBytes = 0;
  /** Deliveries in flight whose PUBLISH leaves only once a commit is done (QoS 2, and whatever was
   * put in flight behind one): while any wait, a later QoS 1 delivery must not be sent ahead of them. */
  #held = 0;
  /** The commit of the latest acknowledged delivery's delete (the deletes after it may share it). */
  #lastDelete: Promise<void> | undefined;
  /** Messages dropped because the queue was full. */
  droppedCount = 0;
  /** More deliveries to queue as this outbox empties (undefined when none: the pump checks only that). */
  feed: OutboxFeed | undefined = undefined;

  constructor(owner: OutboxOwner, services: OutboxServices) {
    this.#owner = owner;
    this.#services = services;
  }

  /** Sent QoS 1/2 deliveries by packet id. */
  get inflight(): Map<number, Delivery> {
    return (this.#inflight ??= new Map());
  }

  /** Deliveries not in flight yet, oldest first. */
  get queue(): DeliveryQueue {
    return (this.#queue ??= new DeliveryQueue());
  }

  /** Deliveries in flight (without creating the window). */
  get inflightCount(): number {
    return this.#inflight?.size ?? 0;
  }

  /** True if the attached link is ready and its window has room for one more QoS 1/2 delivery. */
  get hasRoom(): boolean {
    const link = this.link;
    return link !== undefined && this.inflightCount < link.sendQuota;
  }

  /** Deliveries queued or waiting for their commit (what the session's queue limits count). */
  get queuedCount(): number {
    return (this.#queue?.length ?? 0) + this.#pending;
  }

  /** Payload bytes queued or waiting for their commit. */
  get queuedBytes(): number {
    return (this.#queue?.bytes ?? 0) + this.#pendingBytes;
  }

  /** Would one more message of `payloadBytes` go over the session's queue limits? */
  isFull(payloadBytes: number): boolean {
    const o = this.#services.options;
    return this.queuedCount >= o.maxQueuedMessages || this.queuedBytes + payloadBytes > o.maxQueuedBytes;
  }

  /**
   * Routing a delivery to a persistent session at QoS > 0, whose row goes into the message's unit
   * of work: put it in flight now if the window has room (so no second commit is needed before the
   * PUBLISH leaves) and say when it may leave. `sendEarly`: the store is healthy, so QoS 1 may
   * leave before its commit.
   */
  reserveForCommit(d: Delivery, sendEarly: boolean): Dispatch {
    this.#reserve(d);
    if (d.state === 'queued') {
      this.#pending++;
      this.#pendingBytes += d.message.payload.length;
      return Dispatch.Pending;
    }
    // At least once allows sending QoS 1 while its row is being committed: the row is queued
    // before the PUBACK can delete it, so a fast acknowledgement cancels the pair within the same
    // group commit. A crash before the commit means the publisher got no PUBACK and sends again.
    // QoS 2 must not: a resent PUBLISH would be a second, unknown flow.
    if (d.qos === 1 && sendEarly && this.#held === 0) return Dispatch.Sent;
    this.#held++;
    return Dispatch.Held;
  }

  /** Put `d` in flight at routing if the link is idle with room in its window. */
  #reserve(d: Delivery): void {
    const link = this.link;
    // [MQTT-4.6.0-6] never overtake an earlier message still waiting to be queued or sent
    if (!link || !link.isReady || link.isBackpressured || (this.#queue?.length ?? 0) > 0 || this.#pending > 0) return;
    if (this.inflightCount >= link.sendQuota) return;
    d.packetId = (this.#packetIds ??= new PacketIdAllocator()).allocate(this.inflight);
    if (d.packetId === 0) return;
    d.state = 'sent';
    this.inflight.set(d.packetId, d);
  }

  /** After the commit of a routed message: hand `d` on as `how` says. */
  dispatch(d: Delivery, how: Dispatch, cache: EncodeCache | undefined): void {
    switch (how) {
      case Dispatch.Sent: break;
      case Dispatch.Held: this.#held--; this.sendReserved(d, cache); break;
      case Dispatch.Pending: this.#pending--; this.#pendingBytes -= d.message.payload.length; this.enqueue(d, cache); break;
      default: this.enqueue(d, cache);
    }
  }

  /** The commit of a routed message failed: give back what routing reserved for `d`. */
  abandon(d: Delivery, how: Dispatch): void {
    if (how === Dispatch.Pending) {
      this.#pending--;
      this.#pendingBytes -= d.message.payload.length;
    } else if (how === Dispatch.Held) {
      this.#held--;
      if (this.#inflight?.get(d.packetId) === d) this.#inflight.delete(d.packetId);
      this.pump();
    }
    // Dispatch.Sent: the client has it and will acknowledge it; it stays in flight
  }

  /** Send a delivery reserved at routing: QoS 1 ahead of its commit, QoS 2 once it is committed. */
  sendReserved(d: Delivery, cache: EncodeCache | undefined): void {
    const link = this.link;
    if (!link || !link.isReady || this.#inflight?.get(d.packetId) !== d) return;
    this.#send(link, d, false, cache);
  }

  /** Hand `d` to the link; one the peer cannot take is discarded as if delivered [MQTT-3.1.2-25]. */
  #send(link: SessionLink, d: Delivery, dup: boolean, cache: EncodeCache | undefined): void {
    if (!link.deliver(d, dup, cache) && d.qos > 0) this.complete(d);
  }

  /** Queue a delivery and send what the window allows. */
  enqueue(d: Delivery, cache?: EncodeCache): void {
    this.queue.push(d);
    if (this.link) this.pump(cache);
  }

  /**
   * Send queued deliveries while the peer's window and transport allow. For persistent sessions
   * the packet id is recorded in the store: QoS 2 leaves only after that commit, so a restart
   * resumes it with PUBREL or the same packet id; QoS 1 leaves at once.
   */
  pump(cache?: EncodeCache): void {
    const link = this.link;
    if (!link || !link.isReady) return;
    const { store, clock, options, logger, stats, events } = this.#services;
    const persistent = this.#owner.persistent;
    const queue = this.queue;
    const now = clock.now();
    /** Persistent deliveries put in flight: their state goes to the store; `held` ones leave after that commit. */
    let recorded: Delivery[] | undefined;
    let held: Delivery[] | undefined;
    let expired: Delivery[] | undefined;
    while (queue.length > 0) {
      const d = queue.peek()!;
      if (d.qos === 0) {
        queue.shift();
        if (isExpired(d, now)) continue; // [MQTT-3.3.2-5] expired messages are not delivered
        // The link's own unflushed output counts too: a burst within one turn is not yet in the transport
        if (link.pendingBytes > options.hardBufferBytes) {
          stats.droppedQos0++;
          if (stats.droppedQos0 === 1 || stats.droppedQos0 % 10_000 === 0) {
            logger.warn({ clientId: this.#owner.clientId, dropped: stats.droppedQos0 }, 'client socket buffer full; QoS 0 messages dropped');
          }
          // (built only when a subscriber takes it: this path runs per message under overload)
          if (events.wants(EventType.MessageDropped)) {
            events.emit({ type: EventType.MessageDropped, hub: this.#owner.hub.name, clientId: this.#owner.clientId, topicName: d.message.topicName, reason: 'client_buffer_full' });
          }
          continue;
        }
        link.deliver(d, false, cache);
        continue;
      }
      // [MQTT-3.3.4-9] no more than Receive Maximum unacknowledged QoS 1/2 publishes
      const inflight = this.inflight;
      if (link.isBackpressured || inflight.size >= link.sendQuota) break;
      queue.shift();
      if (isExpired(d, now)) {
        if (persistent) (expired ??= []).push(d);
        continue;
      }
      d.packetId = (this.#packetIds ??= new PacketIdAllocator()).allocate(inflight);
      d.state = 'sent';
      inflight.set(d.packetId, d);
      if (!persistent) {
        this.#send(link, d, false, cache);
        continue;
      }
      (recorded ??= []).push(d);
      if (d.qos === 1 && this.#held === 0 && store.healthy) {
        // At least once: sent now, its in-flight state recorded by the unit below. Should the broker
        // die before that commit, the restart sends the message again as a new delivery.
        this.#send(link, d, false, cache);
      } else {
        // QoS 2 (and whatever follows it) leaves once its packet id is stored [MQTT-4.3.3]
        (held ??= []).push(d);
        this.#held++;
      }
    }
    if (expired) {
      const ids = expired.map((d) => d.id);
      store.transaction((tx) => { for (const id of ids) tx.deleteDelivery(id); })
        .catch((err: unknown) => logger.warn({ err }, 'could not delete expired deliveries'));
    }
    if (recorded) this.#record(link, recorded, held ?? [], cache);
    if (this.feed !== undefined && this.feed.refill(this)) this.pump();
  }

  /** Store the in-flight state of `batch`; send the `waiting` ones once it is committed. */
  #record(link: SessionLink, batch: Delivery[], waiting: Delivery[], cache: EncodeCache | undefined): void {
    const { store, logger } = this.#services;
    store.transaction((tx) => { for (const d of batch) tx.updateDelivery(d.id, d.packetId, 'sent'); }).then(() => {
      this.#held -= waiting.length;
      if (this.link !== link || !link.isReady) return;
      for (const d of waiting) if (this.#inflight?.get(d.packetId) === d) this.#send(link, d, false, cache);
    }, (err: unknown) => {
      this.#held -= waiting.length;
      logger.error({ err, clientId: this.#owner.clientId }, 'could not record deliveries in flight');
      link.fail(err);
    });
  }

  /** The in-flight delivery with `packetId`, if any. */
  find(packetId: number): Delivery | undefined {
    return this.#inflight?.get(packetId);
  }

  /** The peer acknowledged (or the broker discarded) an in-flight delivery. */
  complete(d: Delivery): void {
    if (this.#inflight?.get(d.packetId) === d) this.#inflight.delete(d.packetId);
    if (this.#owner.persistent) {
      // One outcome for this session's acknowledgements that follow each other into one commit
      // (a failed delete only means the message is sent again after a restart)
      const deleted = this.#services.store.transaction((tx) => tx.deleteDelivery(d.id), this);
      if (deleted !== this.#lastDelete) {
        this.#lastDelete = deleted;
        const forget = (): void => { if (this.#lastDelete === deleted) this.#lastDelete = undefined; };
        deleted.then(forget, (err: unknown) => {
          forget();
          this.#services.logger.warn({ err, clientId: this.#owner.clientId }, 'could not delete acknowledged delivery');
        });
      }
    }
    this.pump();
  }

  /**
   * The peer answered PUBREC for `d`: record the state (persistent sessions) so that a restart
   * resumes with PUBREL. Resolves once PUBREL may go out [MQTT-4.3.3].
   */
  released(d: Delivery): Promise<void> | undefined {
    d.state = 'pubrec';
    return this.#owner.persistent
      ? this.#services.store.transaction((tx) => tx.updateDelivery(d.id, d.packetId, 'pubrec'))
      : undefined;
  }

  /** Resend what was in flight when the previous link ended [MQTT-4.4.0-1], then pump. */
  resume(): void {
    const link = this.link;
    if (!link) return;
    if (this.#inflight) {
      for (const d of this.#inflight.values()) {
        if (d.state === 'pubrec') link.release(d.packetId);
        else this.#send(link, d, true, undefined);
      }
    }
    this.pump();
  }

  /** Put back a delivery loaded from the store at start-up: in flight under its packet id, or queued. */
  restore(d: Delivery): void {
    if (d.state === 'queued' || d.packetId === 0 || this.inflight.has(d.packetId)) {
      d.state = 'queued';
      this.queue.push(d);
    } else {
      this.inflight.set(d.packetId, d);
    }
  }

  /** The deliveries `movable` accepts, queued ones first (for handing them to another session). */
  select(movable: (d: Delivery) => boolean): Delivery[] {
    const out: Delivery[] = [];
    if (this.#queue) for (const d of this.#queue) if (movable(d)) out.push(d);
    if (this.#inflight) for (const d of this.#inflight.values()) if (movable(d)) out.push(d);
    return out;
  }

  /** Take `moved` (from `select`) out of the queue and the window; returns the queue as it was before. */
  remove(moved: ReadonlySet<Delivery>): Delivery[] {
    const queuedBefore = this.#queue ? [...this.#queue] : [];
    this.#queue?.extract((d) => moved.has(d));
    if (this.#inflight) for (const d of moved) if (this.#inflight.get(d.packetId) === d) this.#inflight.delete(d.packetId);
    return queuedBefore;
  }

  /**
   * Return deliveries whose move to another session was not stored: queued ones to their places
   * in the queue (`queuedBefore` is the queue as it was), in-flight QoS 1 ones to the window under
   * their packet id (resent if the link is ready), else to the queue's head.
   */
  putBack(back: Delivery[], queuedBefore: Delivery[]): void {
    const queue = this.queue;
    const returning = new Set(back);
    const now = queue.extract(() => true);
    const stillQueued = new Set(now);
    const wasQueued = new Set(queuedBefore);
    for (const d of queuedBefore) if (stillQueued.has(d) || (returning.has(d) && d.state === 'queued')) queue.push(d);
    for (const d of now) if (!wasQueued.has(d)) queue.push(d);
    const link = this.link;
    for (const d of back) {
      if (d.state === 'queued') continue;
      if (!this.inflight.has(d.packetId)) {
        this.inflight.set(d.packetId, d);
        if (link && link.isReady) this.#send(link, d, true, undefined); // [MQTT-4.4.0-1] DUP, same packet id
      } else {
        d.state = 'queued';
        d.packetId = 0;
        queue.unshift(d);
      }
    }
    this.pump();
  }
}
