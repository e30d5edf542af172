// Subscriptions of sessions: add (routing changes at once, the commit follows, retained messages
// are replayed after the acknowledgement), remove (put back if the removal cannot be stored), and
// the subscription objects rebuilt from stored rows.
import type { Message, SubscriptionRequest } from '../mqtt/packet.ts';
import { parseSharedFilter } from '../mqtt/topic.ts';
import type { Hubs } from './hub.ts';
import type { IdSource } from './ids.ts';
import type { OutboxServices } from './outbox.ts';
import type { SubscriptionRecord } from './ports.ts';
import { RetainedReplay } from './retained-replay.ts';
import type { Session, Subscription } from './session.ts';

/** The outcome of adding subscriptions (SubscriptionManager.subscribeMany). */
export interface Subscribed {
  /** The durable commit (persistent sessions); undefined when nothing is stored. */
  committed: Promise<void> | undefined;
  /** After the acknowledgement: start the retained replays. */
  afterAck(): void;
  /** Take the subscriptions back out (their commit failed). */
  undo(): void;
}

/** The outcome of removing subscriptions. */
export interface Unsubscribed {
  /** One per filter: whether a subscription existed and was removed. */
  found: boolean[];
  removed: Subscription[];
  committed: Promise<void> | undefined;
  /** Route the removed subscriptions again (their removal could not be stored). */
  undo(): void;
}

/** A Subscription object for `session` from a request or a stored row. */
export function toSubscription(session: Session, req: SubscriptionRequest, subscriptionId: number | undefined): Subscription {
  const shared = parseSharedFilter(req.topicFilter);
  return {
    kind: 'subscription', session, key: req.topicFilter, topicFilter: shared ? shared.topicFilter : req.topicFilter,
    shareName: shared ? shared.shareName : undefined, qos: req.qos, noLocal: req.noLocal,
    retainAsPublished: req.retainAsPublished, retainHandling: req.retainHandling, subscriptionId,
  };
}

/** A stored subscription row of `session`. */
export function toSubscriptionRecord(session: Session, sub: Subscription): SubscriptionRecord {
  return {
    hub: session.hub.name, clientId: session.clientId, topicFilter: sub.key, qos: sub.qos, noLocal: sub.noLocal,
    retainAsPublished: sub.retainAsPublished, retainHandling: sub.retainHandling, subscriptionId: sub.subscriptionId,
  };
}

/** Adds and removes sessions' subscriptions. */
export class Subscriptions {
  readonly #hubs: Hubs;
  readonly #services: OutboxServices;
  readonly #ids: IdSource;

  constructor(hubs: Hubs, services: OutboxServices, ids: IdSource) {
    this.#hubs = hubs;
    this.#services = services;
    this.#ids = ids;
  }

  /** Add one subscription on behalf of the server; resolves once stored (retained replay started). */
  subscribe(session: Session, req: SubscriptionRequest, subscriptionId: number | undefined): Promise<void> {
    const { committed, afterAck } = this.subscribeMany(session, [req], subscriptionId);
    return (committed ?? Promise.resolve()).then(afterAck);
  }

  /**
   * Add subscriptions (already validated and authorized) to a session. Routing changes at once;
   * `committed` is the durable commit; `afterAck` sends retained messages.
   */
  subscribeMany(session: Session, reqs: SubscriptionRequest[], subscriptionId: number | undefined): Subscribed {
    const hub = this.#hubs.get(session.hub.name);
    const added: Array<{ sub: Subscription; existed: boolean; previous: Subscription | undefined }> = [];
    for (const req of reqs) {
      const sub = toSubscription(session, req, subscriptionId);
      // [MQTT-3.8.4-3] a subscription with the same filter is replaced
      const previous = hub.addSubscription(sub);
      added.push({ sub, existed: previous !== undefined, previous });
    }
    let committed: Promise<void> | undefined;
    if (session.persistent) {
      committed = this.#services.store.transaction((tx) => {
        for (const { sub } of added) tx.putSubscription(toSubscriptionRecord(session, sub));
      });
    }
    return {
      committed,
      // Take back subscriptions that could not be stored, putting back the ones they replaced —
      // unless the session ended since (nothing of it may return to routing or the group
      // indexes) or a later SUBSCRIBE replaced them again (the newer one stays)
      undo: () => {
        if (!session.isCurrent) return;
        for (const { sub, previous } of [...added].reverse()) {
          if (session.subscriptions.get(sub.key) !== sub) continue;
          hub.removeSubscription(sub);
          if (previous) hub.addSubscription(previous);
        }
      },
      afterAck: () => {
        for (const { sub, existed } of added) {
          // [MQTT-3.3.1-9] retained messages on subscribe; none for shared subscriptions [MQTT-3.8.3-?]
          if (sub.shareName !== undefined) continue;
          if (sub.retainHandling === 2 || (sub.retainHandling === 1 && existed)) continue; // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
          this.#sendRetained(session, sub);
        }
      },
    };
  }

  /** Snapshot the retained messages matching `sub` and replay them to the session in pages. */
  #sendRetained(session: Session, sub: Subscription): void {
    const { clock, store, logger, options } = this.#services;
    const hub = this.#hubs.get(session.hub.name);
    const now = clock.now();
    const messages: Message[] = [];
    const expired: string[] = [];
    // The replays a session has outstanding hold at most one full retained store's worth of
    // references (or one full queue): many SUBSCRIBEs with different filters from a client that does
    // not read must not snapshot the retained store over and over. What does not fit is dropped.
    const budget = Math.max(options.maxRetainedMessages, options.maxQueuedMessages) - RetainedReplay.outstanding(session, sub.key);
    let skipped = 0;
    hub.retained.match(sub.topicFilter, (m) => {
      if (m.expiresAtMs !== undefined && m.expiresAtMs <= now) {
        // [MQTT-3.3.2-5] an expired retained message is no longer kept
        expired.push(m.topicName);
        return;
      }
      if (messages.length < budget) messages.push(m);
      else skipped++;
    });
    if (skipped > 0) {
      session.outbox.droppedCount += skipped;
      logger.warn({ clientId: session.clientId, hub: hub.name, topicFilter: sub.topicFilter, skipped, dropped: session.outbox.droppedCount }, 'retained replay over the session limit; messages dropped');
    }
    if (expired.length > 0) {
      for (const t of expired) hub.retained.delete(t);
      store.transaction((tx) => { for (const t of expired) tx.deleteRetained(hub.name, t); })
        .catch((err: unknown) => logger.warn({ err, hub: hub.name }, 'could not delete expired retained messages'));
    }
    if (messages.length > 0) RetainedReplay.start(session, sub, messages, this.#services, this.#ids);
  }

  /** Take the subscriptions to `topicFilters` out of routing and store their removal. */
  unsubscribe(session: Session, topicFilters: readonly string[]): Unsubscribed {
    const hub = this.#hubs.get(session.hub.name);
    const found: boolean[] = [];
    const removed: Subscription[] = [];
    for (const filter of topicFilters) {
      const sub = session.subscriptions.get(filter);
      if (sub) {
        hub.removeSubscription(sub);
        removed.push(sub);
      }
      found.push(sub !== undefined);
    }
    const committed = session.persistent && removed.length > 0
      ? this.#services.store.transaction((tx) => { for (const s of removed) tx.deleteSubscription(session.hub.name, session.clientId, s.key); })
      : undefined;
    return {
      found, removed, committed,
      // Put back subscriptions whose removal could not be stored (unless replaced or the session ended since)
      undo: () => {
        if (!session.isCurrent) return;
        for (const sub of removed) if (!session.subscriptions.has(sub.key)) hub.addSubscription(sub);
      },
    };
  }
}
