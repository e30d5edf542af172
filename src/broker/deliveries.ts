// Outbound side of sessions: queueing, the in-flight window, acknowledgements from the client,
// resending on resume and moving shared-subscription deliveries to another member.
import type { Message, QoS } from '../mqtt/packet.ts';
import type { Broker } from './broker.ts';
import { pickSharedMember } from './router.ts';
import { toDeliveryRecord, type Delivery, type EncodeCache, type RetainedReplay, type Session, type Subscription } from './session.ts';

/** Most retained messages a replay puts on a session's queue at once (and the queue length below which it adds more). */
export const REPLAY_PAGE_MESSAGES = 100;

export class Deliveries {
  readonly #broker: Broker;
  /** QoS 0 messages dropped because a client's transport buffer was full. */
  droppedQos0 = 0;

  constructor(broker: Broker) {
    this.#broker = broker;
  }

  #isExpired(d: Delivery, now: number): boolean {
    return d.message.expiresAtMs !== undefined && d.message.expiresAtMs <= now;
  }

  /** Queue a delivery on a session and send what the window allows. */
  enqueue(session: Session, d: Delivery, cache?: EncodeCache): void {
    session.queue.push(d);
    if (session.connection) this.pump(session, cache);
  }

  /**
   * Send queued deliveries while the client's window and transport allow. For persistent
   * sessions the packet id is recorded in the store: QoS 2 leaves only after that commit, so a
   * restart resumes it with PUBREL or the same packet id; QoS 1 leaves at once.
   */
  pump(session: Session, cache?: EncodeCache): void {
    const conn = session.connection;
    if (!conn || conn.state !== 'connected') return;
    const { store, clock, options, logger } = this.#broker;
    const now = clock.now();
    /** Persistent deliveries put in flight: their state goes to the store; `held` ones leave after that commit. */
    let recorded: Delivery[] | undefined;
    let held: Delivery[] | undefined;
    let expired: Delivery[] | undefined;
    while (session.queue.length > 0) {
      const d = session.queue.peek()!;
      if (d.qos === 0) {
        session.queue.shift();
        if (this.#isExpired(d, now)) continue; // [MQTT-3.3.2-5] expired messages are not delivered
        // The connection's own unflushed output counts too: a burst within one turn is not yet in the transport
        if (conn.pendingBytes > options.hardBufferBytes) {
          this.droppedQos0++;
          if (this.droppedQos0 === 1 || this.droppedQos0 % 10_000 === 0) {
            logger.warn({ clientId: session.clientId, dropped: this.droppedQos0 }, 'client socket buffer full; QoS 0 messages dropped');
          }
          continue;
        }
        conn.sendDelivery(d, false, cache);
        continue;
      }
      // [MQTT-3.3.4-9] no more than Receive Maximum unacknowledged QoS 1/2 publishes
      if (conn.isBackpressured || session.inflight.size >= conn.sendQuota) break;
      session.queue.shift();
      if (this.#isExpired(d, now)) {
        if (session.persistent) (expired ??= []).push(d);
        continue;
      }
      d.packetId = session.packetIds.allocate(session.inflight);
      d.state = 'sent';
      session.inflight.set(d.packetId, d);
      if (!session.persistent) {
        conn.sendDelivery(d, false, cache);
        continue;
      }
      (recorded ??= []).push(d);
      if (d.qos === 1 && session.heldForCommit === 0 && store.healthy) {
        // At least once: sent now, its in-flight state recorded by the unit below. Should the broker
        // die before that commit, the restart sends the message again as a new delivery.
        conn.sendDelivery(d, false, cache);
      } else {
        // QoS 2 (and whatever follows it) leaves once its packet id is stored [MQTT-4.3.3]
        (held ??= []).push(d);
        session.heldForCommit++;
      }
    }
    if (expired) {
      const ids = expired.map((d) => d.id);
      store.transaction((tx) => { for (const id of ids) tx.deleteDelivery(id); })
        .catch((err: unknown) => logger.warn({ err }, 'could not delete expired deliveries'));
    }
    if (recorded) {
      const batch = recorded;
      const waiting = held ?? [];
      store.transaction((tx) => { for (const d of batch) tx.updateDelivery(d.id, d.packetId, 'sent'); }).then(() => {
        session.heldForCommit -= waiting.length;
        if (session.connection !== conn || conn.state !== 'connected') return;
        for (const d of waiting) if (session.inflight.get(d.packetId) === d) conn.sendDelivery(d, false, cache);
      }, (err: unknown) => {
        session.heldForCommit -= waiting.length;
        logger.error({ err, clientId: session.clientId }, 'could not record deliveries in flight');
        conn.fail(err);
      });
    }
    if (session.replays !== undefined && this.#refill(session)) this.pump(session);
  }

  /**
   * Start replaying `messages` (retained, matching `sub`) to a session. A new SUBSCRIBE with the
   * same filter replaces a replay still in progress [MQTT-3.8.4-3], so repeating a SUBSCRIBE does
   * not multiply the work.
   */
  startReplay(session: Session, sub: Subscription, messages: Message[]): void {
    const replay: RetainedReplay = { sub, messages, next: 0 };
    const list = (session.replays ??= []);
    const i = list.findIndex((r) => r.sub.key === sub.key);
    if (i >= 0) list[i] = replay;
    else list.push(replay);
    this.pump(session);
  }

  /**
   * Put the next page of retained replay on the session's queue, if the client has taken the
   * previous ones: the queue is short, the connection is not backpressured and its pending output
   * (unflushed and in the transport) is below the soft limit. The page respects the session's
   * queue limits. Returns true if deliveries were queued now (a page of a persistent session's
   * QoS 1/2 deliveries is queued once stored, and pumps again then).
   */
  #refill(session: Session): boolean {
    const conn = session.connection;
    const { options, clock, store, logger } = this.#broker;
    if (!conn || conn.state !== 'connected' || session.replayStoring) return false;
    if (session.queue.length >= REPLAY_PAGE_MESSAGES || conn.isBackpressured || conn.pendingBytes >= options.softBufferBytes) return false;
    const replays = session.replays!;
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
      const queued = session.queue.length + page.length;
      if (queued >= options.maxQueuedMessages || session.queue.bytes + bytes + m.payload.length > options.maxQueuedBytes) {
        if (queued > 0) break; // the session's queue limits: wait until the client has taken what is queued
        // Larger than the whole queue allows: dropped, as a routed message would be
        replay.next++;
        session.droppedCount++;
        if (session.droppedCount === 1 || session.droppedCount % 1000 === 0) {
          logger.warn({ clientId: session.clientId, hub: hub.name, dropped: session.droppedCount, topicName: m.topicName }, 'retained message exceeds the session queue limit; dropped');
        }
        continue;
      }
      replay.next++;
      page.push({
        id: this.#broker.nextId(), message: m, qos: Math.min(m.qos, sub.qos) as QoS, retain: true, // [MQTT-3.3.1-9] retain flag set
        subscriptionIds: sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined, shareKey: undefined,
        packetId: 0, state: 'queued',
      });
      bytes += m.payload.length;
    }
    if (replays.length === 0) session.replays = undefined;
    if (page.length === 0) return false;
    const durable = session.persistent ? page.filter((d) => d.qos > 0) : [];
    if (durable.length === 0) {
      for (const d of page) session.queue.push(d);
      return true;
    }
    // A persistent session's QoS 1/2 deliveries are stored before they are queued (kept across a restart)
    session.replayStoring = true;
    store.transaction((tx) => {
      for (const d of durable) tx.insertMessage(d.message);
      tx.enqueueDeliveries(durable.map((d) => toDeliveryRecord(session, d)));
    }).then(() => {
      session.replayStoring = false;
      if (hub.sessions.get(session.clientId) !== session) return;
      for (const d of page) session.queue.push(d);
      this.pump(session);
    }, (err: unknown) => {
      session.replayStoring = false;
      session.replays = undefined;
      logger.error({ err, clientId: session.clientId }, 'could not queue retained messages; replay stopped');
    });
    return false;
  }

  /**
   * For a persistent session that is connected, idle and has room in its window: assign the
   * packet id and put `d` in flight before its row is stored, so no second commit is needed.
   */
  reserve(session: Session, d: Delivery): void {
    const conn = session.connection;
    // [MQTT-4.6.0-6] never overtake an earlier message still waiting to be queued or sent
    if (!conn || conn.state !== 'connected' || conn.isBackpressured || session.queue.length > 0 || session.pendingDispatch > 0) return;
    if (session.inflight.size >= conn.sendQuota) return;
    d.packetId = session.packetIds.allocate(session.inflight);
    if (d.packetId === 0) return;
    d.state = 'sent';
    session.inflight.set(d.packetId, d);
  }

  /** Send a delivery reserved by `reserve`: QoS 1 ahead of its commit, QoS 2 once it is committed. */
  sendReserved(session: Session, d: Delivery, cache?: EncodeCache): void {
    const conn = session.connection;
    if (!conn || conn.state !== 'connected' || session.inflight.get(d.packetId) !== d) return;
    conn.sendDelivery(d, false, cache);
  }

  /** The client acknowledged (or the broker discarded) an in-flight delivery. */
  complete(session: Session, d: Delivery): void {
    if (session.inflight.get(d.packetId) === d) session.inflight.delete(d.packetId);
    if (session.persistent) {
      this.#broker.store.transaction((tx) => tx.deleteDelivery(d.id))
        .catch((err: unknown) => this.#broker.logger.warn({ err, clientId: session.clientId }, 'could not delete acknowledged delivery'));
    }
    this.pump(session);
  }

  /** Resend what was in flight when the session's previous connection ended [MQTT-4.4.0-1]. */
  resume(session: Session): void {
    const conn = session.connection;
    if (!conn) return;
    for (const d of session.inflight.values()) {
      if (d.state === 'pubrec') conn.send({ type: 'pubrel', packetId: d.packetId, reasonCode: 0 });
      else conn.sendDelivery(d, true, undefined);
    }
    this.pump(session);
  }

  /**
   * Hand a session's shared-subscription deliveries to other members of their groups: queued
   * ones, and QoS 1 ones in flight (a duplicate is allowed at QoS 1, a loss is not).
   */
  redistributeShared(session: Session): void {
    const hub = session.hub;
    const movable = (d: Delivery): boolean => d.shareKey !== undefined && (d.state === 'queued' || d.qos === 1) && d.state !== 'pubrec';
    const candidates: Delivery[] = [];
    for (const d of session.queue) if (movable(d)) candidates.push(d);
    for (const d of session.inflight.values()) if (movable(d)) candidates.push(d);
    if (candidates.length === 0) return;
    const moved: Array<{ from: Delivery; to: Delivery; target: Session }> = [];
    for (const d of candidates) {
      const group = hub.sharedGroups.get(d.shareKey!);
      if (!group) continue;
      const member = pickSharedMember(group, session, d.qos);
      if (!member || !member.session.connection) continue;
      // [MQTT-4.8.2-3] the new member's granted QoS; [MQTT-3.3.1-12] [MQTT-3.3.1-13] its Retain As Published
      const to: Delivery = {
        id: this.#broker.nextId(), message: d.message, qos: Math.min(d.message.qos, member.qos) as QoS,
        retain: member.retainAsPublished && d.message.retain,
        subscriptionIds: member.subscriptionId !== undefined ? [member.subscriptionId] : undefined, shareKey: d.shareKey,
        packetId: 0, state: 'queued',
      };
      moved.push({ from: d, to, target: member.session });
    }
    if (moved.length === 0) return;
    const movedSet = new Set(moved.map((m) => m.from));
    const queuedBefore = [...session.queue];
    session.queue.extract((d) => movedSet.has(d));
    for (const m of moved) if (session.inflight.get(m.from.packetId) === m.from) session.inflight.delete(m.from.packetId);
    const apply = (): void => { for (const m of moved) this.enqueue(m.target, m.to); };
    const durable = moved.some((m) => m.target.persistent) || session.persistent;
    if (!durable) {
      apply();
      return;
    }
    this.#broker.store.transaction((tx) => {
      for (const m of moved) {
        if (session.persistent) tx.deleteDelivery(m.from.id);
        if (m.target.persistent) {
          tx.insertMessage(m.to.message);
          tx.enqueueDeliveries([toDeliveryRecord(m.target, m.to)]);
        }
      }
    }).then(apply, (err: unknown) => {
      // Nothing of the move is stored: the rows are still the leaving session's, so the deliveries go back to it
      this.#broker.logger.error({ err, clientId: session.clientId, deliveries: moved.length }, 'could not move shared deliveries; they stay with their session');
      this.#putBack(session, moved.map((m) => m.from), queuedBefore);
    });
  }

  /**
   * Return deliveries whose move to another shared member was not stored: queued ones to their
   * places in the queue (`queuedBefore` is the queue as it was), in-flight QoS 1 ones to the window
   * under their packet id (resent if the session is connected again), else to the queue's head.
   */
  #putBack(session: Session, back: Delivery[], queuedBefore: Delivery[]): void {
    if (session.hub.sessions.get(session.clientId) !== session) return; // the session has ended meanwhile
    const returning = new Set(back);
    const now = session.queue.extract(() => true);
    const stillQueued = new Set(now);
    const wasQueued = new Set(queuedBefore);
    for (const d of queuedBefore) if (stillQueued.has(d) || (returning.has(d) && d.state === 'queued')) session.queue.push(d);
    for (const d of now) if (!wasQueued.has(d)) session.queue.push(d);
    const conn = session.connection;
    for (const d of back) {
      if (d.state === 'queued') continue;
      if (!session.inflight.has(d.packetId)) {
        session.inflight.set(d.packetId, d);
        if (conn && conn.state === 'connected') conn.sendDelivery(d, true, undefined); // [MQTT-4.4.0-1] DUP, same packet id
      } else {
        d.state = 'queued';
        d.packetId = 0;
        session.queue.unshift(d);
      }
    }
    this.pump(session);
  }
}
