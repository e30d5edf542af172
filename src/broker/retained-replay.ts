// Retained messages replayed to a session after SUBSCRIBE [MQTT-3.3.1-9]: a snapshot of the
// matching messages, fed to the session's outbox a page at a time as the client takes them, within
// the session's queue limits. Persistent sessions' QoS 1/2 pages are stored before they are queued.
import type { Message, QoS } from '../mqtt/packet.ts';
import { QueuedDelivery, toDeliveryRecord, type Delivery } from './delivery.ts';
import { EventType } from './events.ts';
import type { IdSource } from './ids.ts';
import type { Outbox, OutboxFeed, OutboxServices } from './outbox.ts';
import type { Session, Subscription } from './session.ts';

/** Most retained messages a replay puts on a session's queue at once (and the queue length below which it adds more). */
export const REPLAY_PAGE_MESSAGES = 100;

/** The retained messages still to be sent for one subscription. */
interface Replay {
  sub: Subscription;
  messages: Message[];
  /** Index of the next message to send. */
  next: number;
}

/** The retained replays of one session, oldest first; the session's outbox feed while any is left. */
export class RetainedReplay implements OutboxFeed {
  readonly #session: Session;
  readonly #services: OutboxServices;
  readonly #ids: IdSource;
  readonly #replays: Replay[] = [];
  /** A page is being stored (persistent session, QoS > 0): the next waits for it. */
  #storing = false;

  private constructor(session: Session, services: OutboxServices, ids: IdSource) {
    this.#session = session;
    this.#services = services;
    this.#ids = ids;
  }

  /**
   * Start replaying `messages` (retained, matching `sub`) to `session`. A new SUBSCRIBE with the
   * same filter replaces a replay still in progress [MQTT-3.8.4-3], so repeating a SUBSCRIBE does
   * not multiply the work.
   */
  static start(session: Session, sub: Subscription, messages: Message[], services: OutboxServices, ids: IdSource): void {
    const outbox = session.outbox;
    let feed = outbox.feed;
    if (!(feed instanceof RetainedReplay)) feed = outbox.feed = new RetainedReplay(session, services, ids);
    const list = (feed as RetainedReplay).#replays;
    const replay: Replay = { sub, messages, next: 0 };
    const i = list.findIndex((r) => r.sub.key === sub.key);
    if (i >= 0) list[i] = replay;
    else list.push(replay);
    outbox.pump();
  }

  /** Messages the session's replays still hold, leaving out the replay for `exceptKey` (a SUBSCRIBE replacing it). */
  static outstanding(session: Session, exceptKey?: string): number {
    const feed = session.outbox.feed;
    if (!(feed instanceof RetainedReplay)) return 0;
    let n = 0;
    for (const r of feed.#replays) if (r.sub.key !== exceptKey) n += r.messages.length - r.next;
    return n;
  }

  /** Replays not finished yet. */
  get length(): number {
    return this.#replays.length;
  }

  /**
   * Put the next page on the outbox's queue, if the client has taken the previous ones: the queue
   * is short, the link is not backpressured and its pending output is below the soft limit. Returns
   * true if deliveries were queued now (a stored page is queued once committed, and pumps then).
   */
  refill(outbox: Outbox): boolean {
    const session = this.#session;
    const link = outbox.link;
    const { options, clock, store, logger, events } = this.#services;
    if (!link || !link.isReady || this.#storing) return false;
    const queue = outbox.queue;
    if (queue.length >= REPLAY_PAGE_MESSAGES || link.isBackpressured || link.pendingBytes >= options.softBufferBytes) return false;
    const replays = this.#replays;
    const hub = session.hub;
    const now = clock.now();
    const page: Delivery[] = [];
    let bytes = 0;
    while (page.length < REPLAY_PAGE_MESSAGES && bytes < options.softBufferBytes) {
      const replay = replays[0];
      if (!replay) break;
      const sub = replay.sub;
      if (replay.next >= replay.messages.length || session.subscriptions.get(sub.key) !== sub) {
        replays.shift(); // done, or the subscription was removed or replaced since
        continue;
      }
      const m = replay.messages[replay.next]!;
      // Replaced or removed since the SUBSCRIBE (a newer one was routed live), or [MQTT-3.3.2-5] expired
      if (hub.retained.get(m.topicName) !== m || (m.expiresAtMs !== undefined && m.expiresAtMs <= now)) {
        replay.next++;
        continue;
      }
      const queued = queue.length + page.length;
      if (queued >= options.maxQueuedMessages || queue.bytes + bytes + m.payload.length > options.maxQueuedBytes) {
        if (queued > 0) break; // the session's queue limits: wait until the client has taken what is queued
        // Larger than the whole queue allows: dropped, as a routed message would be
        replay.next++;
        const dropped = ++outbox.droppedCount;
        this.#services.stats.droppedRetainedTooLarge++;
        if (dropped === 1 || dropped % 1000 === 0) {
          logger.warn({ clientId: session.clientId, hub: hub.name, dropped, topicName: m.topicName }, 'retained message exceeds the session queue limit; dropped');
        }
        if (events.wants(EventType.MessageDropped)) {
          events.emit({ type: EventType.MessageDropped, hub: hub.name, clientId: session.clientId, topicName: m.topicName, reason: 'retained_too_large' });
        }
        continue;
      }
      replay.next++;
      page.push(new QueuedDelivery(
        this.#ids.next(), m, Math.min(m.qos, sub.qos) as QoS, true, // [MQTT-3.3.1-9] retain flag set
        sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined, undefined,
      ));
      bytes += m.payload.length;
    }
    const durable = session.persistent ? page.filter((d) => d.qos > 0) : [];
    if (durable.length === 0) {
      this.#detachIfDone(outbox);
      if (page.length === 0) return false;
      for (const d of page) queue.push(d);
      return true;
    }
    // A persistent session's QoS 1/2 deliveries are stored before they are queued (kept across a restart)
    this.#storing = true;
    store.transaction((tx) => {
      for (const d of durable) tx.insertMessage(d.message);
      tx.enqueueDeliveries(durable.map((d) => toDeliveryRecord(session, d)));
    }).then(() => {
      this.#storing = false;
      // Detached only now: a SUBSCRIBE meanwhile joins this feed, so its pages wait for this one
      this.#detachIfDone(outbox);
      if (!session.isCurrent) return;
      for (const d of page) queue.push(d);
      outbox.pump();
    }, (err: unknown) => {
      this.#storing = false;
      this.#replays.length = 0;
      if (outbox.feed === this) outbox.feed = undefined;
      logger.error({ err, clientId: session.clientId }, 'could not queue retained messages; replay stopped');
    });
    return false;
  }

  /** Leave the outbox once every replay is done and no page is being stored. */
  #detachIfDone(outbox: Outbox): void {
    if (this.#replays.length === 0 && !this.#storing && outbox.feed === this) outbox.feed = undefined;
  }
}
