// Session lifecycle: open (clean start, resume, takeover), detach when a connection ends, will
// publication with its delay, session expiry, subscriptions and start-up restore.
import type { ConnectPacket, Message, SubscriptionRequest } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import { compactProperties } from '../mqtt/codec.ts';
import { parseSharedFilter } from '../mqtt/topic.ts';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import type { Hub } from './hub.ts';
import { wakeAt, type StoredState, type SessionRecord, type UnitOfWork, type WillRecord } from './ports.ts';
import { Session, type Delivery, type Subscription } from './session.ts';

const NEVER = 0xffffffff;

export class SessionManager {
  readonly #broker: Broker;

  constructor(broker: Broker) {
    this.#broker = broker;
  }

  #record(session: Session, connected: boolean): SessionRecord {
    const now = this.#broker.clock.now();
    return {
      hub: session.hub.name, clientId: session.clientId, protocolVersion: session.protocolVersion,
      expiryIntervalSec: session.expiryIntervalSec, connectedAtMs: connected ? now : null,
      disconnectedAtMs: connected ? null : (session.disconnectedAtMs ?? now), nodeId: this.#broker.options.nodeId,
    };
  }

  /**
   * Attach `conn` to the session of its client id (taking over a live one [MQTT-3.1.4-3]).
   * Returns whether a session was present and the commit to wait for before CONNACK.
   */
  open(conn: Connection, packet: ConnectPacket, expiryIntervalSec: number): {
    session: Session; sessionPresent: boolean; committed: Promise<void> | undefined;
    /** Put things back as they were when the commit failed and the CONNECT is refused. */
    undo(): void;
  } {
    const broker = this.#broker;
    const hub = broker.hub(conn.info.hub);
    const clientId = conn.clientId;
    const live = hub.sessions.get(clientId)?.connection;
    if (live) {
      broker.logger.info({ clientId, hub: hub.name }, 'session taken over');
      broker.audit({ hub: hub.name, event: 'takeover', clientId, actor: 'broker', remoteAddress: conn.channel.remoteAddress, detail: { previousAddress: live.channel.remoteAddress } });
      live.end(ReasonCode.SessionTakenOver); // [MQTT-3.1.4-3]
    }
    let session = hub.sessions.get(clientId);
    const wasStored = session?.persistent ?? false;
    if (session && packet.cleanStart) {
      this.end(session); // [MQTT-3.1.2-4] clean start discards the existing session
      session = undefined;
    }
    const sessionPresent = session !== undefined; // [MQTT-3.2.2-2] [MQTT-3.2.2-3]
    const before = session && {
      will: session.will, disconnectedAtMs: session.disconnectedAtMs, expiryIntervalSec: session.expiryIntervalSec,
      persistent: session.persistent, protocolVersion: session.protocolVersion,
    };
    if (!session) {
      session = new Session(hub, clientId, packet.protocolVersion);
      hub.sessions.set(clientId, session);
    } else {
      session.expiryTimer?.cancel();
      session.expiryTimer = undefined;
      // [MQTT-3.1.3-9] a new connection before the will delay elapses: the will is not published
      session.willTimer?.cancel();
      session.willTimer = undefined;
      session.will = undefined;
    }
    session.protocolVersion = packet.protocolVersion;
    session.expiryIntervalSec = expiryIntervalSec;
    session.persistent = expiryIntervalSec > 0;
    session.disconnectedAtMs = undefined;
    if (packet.will) session.will = this.#willRecord(conn, packet);
    let committed: Promise<void> | undefined;
    if (session.persistent || wasStored) {
      const s = session;
      committed = broker.store.transaction((tx) => {
        if (wasStored && (packet.cleanStart || !s.persistent)) tx.deleteSession(hub.name, clientId);
        if (!s.persistent) return;
        tx.putSession(this.#record(s, true));
        if (s.will) tx.putWill(s.will);
        else tx.deleteWill(hub.name, clientId);
      });
    }
    const opened = session;
    const undo = (): void => {
      if (opened.connection || hub.sessions.get(clientId) !== opened) return;
      if (!before) {
        hub.removeAllSubscriptions(opened);
        hub.sessions.delete(clientId);
        return;
      }
      Object.assign(opened, before);
      opened.disconnectedAtMs ??= broker.clock.now();
      if (opened.will) this.#scheduleWill(opened);
      if (opened.persistent) this.#scheduleExpiry(opened);
      else this.end(opened);
    };
    return { session, sessionPresent, committed, undo };
  }

  #willRecord(conn: Connection, packet: ConnectPacket): WillRecord {
    const will = packet.will!;
    const props = will.properties;
    const now = this.#broker.clock.now();
    const message: Message = {
      id: 0, hub: this.#broker.hub(conn.info.hub).name, topicName: will.topicName, payload: will.payload, qos: will.qos,
      retain: will.retain, properties: compactProperties(props), publisherId: conn.clientId, createdAtMs: now,
    };
    return {
      hub: message.hub, clientId: conn.clientId, message, delayIntervalSec: props?.willDelayInterval ?? 0,
      messageExpiryIntervalSec: props?.messageExpiryInterval,
    };
  }

  /** The connection holding `session` is gone: schedule the will and the session's end. */
  detach(conn: Connection, publishWill: boolean): void {
    const session = conn.session;
    if (!session || session.connection !== conn) return;
    const broker = this.#broker;
    session.connection = undefined;
    session.disconnectedAtMs = broker.clock.now();
    broker.audit({
      hub: session.hub.name, event: 'disconnect', clientId: session.clientId, remoteAddress: conn.channel.remoteAddress,
      reasonCode: conn.closeReason?.reasonCode, actor: conn.closeReason?.by ?? 'network',
      detail: { initiatedBy: conn.closeReason?.by ?? 'network', willPublished: publishWill && session.will !== undefined },
    });
    this.#broker.deliveries.redistributeShared(session);
    if (session.will && !publishWill) {
      session.will = undefined;
      if (session.persistent) this.#persist(session, (tx) => tx.deleteWill(session.hub.name, session.clientId));
    }
    if (!session.persistent) {
      this.end(session);
      return;
    }
    this.#persist(session, (tx) => tx.putSession(this.#record(session, false)));
    if (session.will) this.#scheduleWill(session);
    this.#scheduleExpiry(session);
  }

  #persist(session: Session, build: (tx: UnitOfWork) => void): void {
    this.#broker.store.transaction(build).catch((err: unknown) => {
      this.#broker.logger.error({ err, clientId: session.clientId, hub: session.hub.name }, 'could not store session change');
    });
  }

  /**
   * End a disconnected session at disconnectedAtMs + its Session Expiry Interval (a stored time, so
   * the deadline holds across restarts); 0xFFFFFFFF never expires (MQTT 5 §3.1.2.11.2). The
   * timer is only a wake-up (wakeAt): intervals above 2^31-1 ms never reach setTimeout as such.
   */
  #scheduleExpiry(session: Session): void {
    session.expiryTimer?.cancel();
    session.expiryTimer = undefined;
    if (session.expiryIntervalSec >= NEVER) return;
    const clock = this.#broker.clock;
    const atMs = (session.disconnectedAtMs ?? clock.now()) + session.expiryIntervalSec * 1000;
    if (atMs <= clock.now()) {
      this.end(session);
      return;
    }
    session.expiryTimer = wakeAt(clock, atMs, () => {
      session.expiryTimer = undefined;
      if (session.connection) return;
      this.#broker.audit({ hub: session.hub.name, event: 'session_expired', clientId: session.clientId, actor: 'broker' });
      this.end(session);
    });
  }

  /**
   * [MQTT-3.1.3-9] publish the will at disconnectedAtMs + its Will Delay Interval, or when the
   * session ends if that is sooner (`end`). Like expiry, computed from the stored time.
   */
  #scheduleWill(session: Session): void {
    const will = session.will;
    if (!will) return;
    session.willTimer?.cancel();
    session.willTimer = undefined;
    const clock = this.#broker.clock;
    const atMs = (session.disconnectedAtMs ?? clock.now()) + will.delayIntervalSec * 1000;
    if (atMs <= clock.now()) {
      this.publishWill(session);
      return;
    }
    session.willTimer = wakeAt(clock, atMs, () => {
      session.willTimer = undefined;
      if (!session.connection) this.publishWill(session);
    });
  }

  /** Publish and forget the session's will. */
  publishWill(session: Session): void {
    const will = session.will;
    if (!will) return;
    session.will = undefined;
    session.willTimer?.cancel();
    session.willTimer = undefined;
    const broker = this.#broker;
    const now = broker.clock.now();
    const message: Message = {
      ...will.message, id: broker.nextId(), createdAtMs: now,
      expiresAtMs: will.messageExpiryIntervalSec ? now + will.messageExpiryIntervalSec * 1000 : undefined,
    };
    const o = broker.options;
    if (message.retain && session.hub.retainedOverQuota(message.topicName, message.payload.length, o.maxRetainedMessages, o.maxRetainedBytes)) {
      // The will is still published, but not kept: the hub's retained caps hold for wills too
      message.retain = false;
      broker.logger.info({ clientId: session.clientId, hub: session.hub.name, topicName: message.topicName }, 'retained will published without retain: hub retained limit reached');
    }
    const persistent = session.persistent;
    broker.publish(message, persistent ? (tx) => tx.deleteWill(session.hub.name, session.clientId) : undefined)
      .catch((err: unknown) => broker.logger.error({ err, clientId: session.clientId }, 'could not publish will'));
  }

  /** End a session: publish a pending will, drop its subscriptions and stored state. */
  end(session: Session): void {
    const hub = session.hub;
    if (hub.sessions.get(session.clientId) !== session) return;
    session.expiryTimer?.cancel();
    session.expiryTimer = undefined;
    if (session.will) this.publishWill(session);
    hub.removeAllSubscriptions(session);
    this.#broker.deliveries.redistributeShared(session);
    hub.sessions.delete(session.clientId);
    if (session.persistent) this.#persist(session, (tx) => tx.deleteSession(hub.name, session.clientId));
    session.persistent = false;
    // An empty hub is forgotten (it is made again on demand): connecting once to many hub names
    // must not use up the hub limit for good
    this.#broker.forgetHubIfEmpty(hub);
  }

  /**
   * Add subscriptions (already validated and authorized) to a session. Routing changes at once;
   * the returned promise is the durable commit; `afterAck` sends retained messages.
   */
  subscribe(session: Session, req: SubscriptionRequest, subscriptionId: number | undefined): Promise<void> {
    const { committed, afterAck } = this.subscribeMany(session, [req], subscriptionId);
    return (committed ?? Promise.resolve()).then(afterAck);
  }

  subscribeMany(session: Session, reqs: SubscriptionRequest[], subscriptionId: number | undefined): {
    committed: Promise<void> | undefined; afterAck: () => void;
    /** Take the subscriptions back out (their commit failed). */
    undo(): void;
  } {
    const hub = session.hub;
    const added: Array<{ sub: Subscription; existed: boolean; previous: Subscription | undefined }> = [];
    for (const req of reqs) {
      const shared = parseSharedFilter(req.topicFilter);
      const sub: Subscription = {
        kind: 'subscription', session, key: req.topicFilter, topicFilter: shared ? shared.topicFilter : req.topicFilter,
        shareName: shared ? shared.shareName : undefined, qos: req.qos, noLocal: req.noLocal,
        retainAsPublished: req.retainAsPublished, retainHandling: req.retainHandling, subscriptionId,
      };
      // [MQTT-3.8.4-3] a subscription with the same filter is replaced
      const previous = hub.addSubscription(sub);
      added.push({ sub, existed: previous !== undefined, previous });
    }
    let committed: Promise<void> | undefined;
    if (session.persistent) {
      committed = this.#broker.store.transaction((tx) => {
        for (const { sub } of added) {
          tx.putSubscription({
            hub: hub.name, clientId: session.clientId, topicFilter: sub.key, qos: sub.qos, noLocal: sub.noLocal,
            retainAsPublished: sub.retainAsPublished, retainHandling: sub.retainHandling, subscriptionId: sub.subscriptionId,
          });
        }
      });
    }
    return {
      committed,
      undo: () => {
        for (const { sub, previous } of [...added].reverse()) {
          hub.removeSubscription(sub);
          if (previous) hub.addSubscription(previous);
        }
      },
      afterAck: () => {
        for (const { sub, existed } of added) {
          // [MQTT-3.3.1-9] retained messages on subscribe; none for shared subscriptions [MQTT-3.8.3-?]
          if (sub.shareName !== undefined) continue;
          if (sub.retainHandling === 2 || (sub.retainHandling === 1 && existed)) continue; // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
          this.#sendRetained(hub, session, sub);
        }
      },
    };
  }

  /** Snapshot the retained messages matching `sub` and replay them to the session in pages (Deliveries). */
  #sendRetained(hub: Hub, session: Session, sub: Subscription): void {
    const broker = this.#broker;
    const now = broker.clock.now();
    const messages: Message[] = [];
    const expired: string[] = [];
    // The replays a session has outstanding hold at most one full retained store's worth of
    // references (or one full queue): many SUBSCRIBEs with different filters from a client that does
    // not read must not snapshot the retained store over and over. What does not fit is dropped.
    let budget = Math.max(broker.options.maxRetainedMessages, broker.options.maxQueuedMessages);
    for (const r of session.replays ?? []) if (r.sub.key !== sub.key) budget -= r.messages.length - r.next;
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
      session.droppedCount += skipped;
      broker.logger.warn({ clientId: session.clientId, hub: hub.name, topicFilter: sub.topicFilter, skipped, dropped: session.droppedCount }, 'retained replay over the session queue limit; messages dropped');
    }
    if (expired.length > 0) {
      for (const t of expired) hub.retained.delete(t);
      broker.store.transaction((tx) => { for (const t of expired) tx.deleteRetained(hub.name, t); })
        .catch((err: unknown) => broker.logger.warn({ err, hub: hub.name }, 'could not delete expired retained messages'));
    }
    if (messages.length > 0) broker.deliveries.startReplay(session, sub, messages);
  }

  /** Take a subscription out of routing; returns it, or undefined if there was none. */
  unsubscribe(session: Session, topicFilter: string): Subscription | undefined {
    const sub = session.subscriptions.get(topicFilter);
    if (!sub) return undefined;
    session.hub.removeSubscription(sub);
    return sub;
  }

  /** Put back subscriptions whose removal could not be stored (unless replaced or the session ended since). */
  restoreSubscriptions(session: Session, subs: Subscription[]): void {
    if (session.hub.sessions.get(session.clientId) !== session) return;
    for (const sub of subs) if (!session.subscriptions.has(sub.key)) session.hub.addSubscription(sub);
  }

  /** Rebuild sessions, subscriptions, deliveries, wills and retained messages from the store. */
  restore(state: StoredState): void {
    const broker = this.#broker;
    const now = broker.clock.now();
    for (const m of state.retained) broker.hub(m.hub).retained.set(m.topicName, m);
    const crashed = new Set<Session>();
    for (const r of state.sessions) {
      const hub = broker.hub(r.hub);
      const s = new Session(hub, r.clientId, r.protocolVersion);
      s.persistent = true;
      s.expiryIntervalSec = r.expiryIntervalSec;
      // A session stored as connected was connected when the broker stopped: treat it as a network failure now.
      s.disconnectedAtMs = r.disconnectedAtMs ?? now;
      if (r.disconnectedAtMs === null) crashed.add(s);
      hub.sessions.set(r.clientId, s);
    }
    const find = (hub: string, clientId: string): Session | undefined => broker.hub(hub).sessions.get(clientId);
    for (const r of state.subscriptions) {
      const s = find(r.hub, r.clientId);
      if (!s) continue;
      const shared = parseSharedFilter(r.topicFilter);
      s.hub.addSubscription({
        kind: 'subscription', session: s, key: r.topicFilter, topicFilter: shared ? shared.topicFilter : r.topicFilter,
        shareName: shared ? shared.shareName : undefined, qos: r.qos, noLocal: r.noLocal, retainAsPublished: r.retainAsPublished,
        retainHandling: r.retainHandling, subscriptionId: r.subscriptionId,
      });
    }
    const messages = new Map<number, Message>();
    for (const m of state.messages) messages.set(m.id, m);
    const deliveries = [...state.deliveries].sort((a, b) => a.id - b.id);
    for (const r of deliveries) {
      const s = find(r.hub, r.clientId);
      const message = messages.get(r.messageId);
      if (!s || !message) continue;
      const d: Delivery = {
        id: r.id, message, qos: r.qos, retain: r.retain, subscriptionIds: r.subscriptionIds.length ? r.subscriptionIds : undefined,
        shareKey: r.shareKey, packetId: r.packetId, state: r.state,
      };
      if (r.state === 'queued' || r.packetId === 0 || s.inflight.has(r.packetId)) {
        d.state = 'queued';
        s.queue.push(d);
      } else {
        s.inflight.set(r.packetId, d);
      }
    }
    for (const r of state.inboundQos2) find(r.hub, r.clientId)?.inboundQos2.add(r.packetId);
    for (const w of state.wills) {
      const s = find(w.hub, w.clientId);
      if (s) s.will = w;
    }
    for (const s of crashed) {
      this.#persist(s, (tx) => tx.putSession(this.#record(s, false)));
    }
    for (const s of crashed) if (s.will) this.#scheduleWill(s);
    for (const hub of broker.hubs.values()) {
      for (const s of [...hub.sessions.values()]) {
        if (s.will && !s.willTimer && !crashed.has(s)) this.#scheduleWill(s);
        this.#scheduleExpiry(s);
      }
    }
    broker.logger.info({ sessions: state.sessions.length, deliveries: state.deliveries.length, retained: state.retained.length }, 'state restored');
  }

  /** Cancel every will and expiry timer (shutdown). */
  stopTimers(): void {
    for (const hub of this.#broker.hubs.values()) {
      for (const s of hub.sessions.values()) {
        s.willTimer?.cancel();
        s.expiryTimer?.cancel();
      }
    }
  }
}
