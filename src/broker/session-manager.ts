// Session lifecycle: open (clean start, resume, takeover), detach when a link ends, session
// expiry from the stored disconnection time, end, and the inbound QoS 2 ids a session holds.
// Wills, subscriptions and shared hand-off are their own modules; this one sequences them.
import type { ConnectPacket } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import { EventType, type EventBus, type InitiatedBy } from './events.ts';
import type { Hubs } from './hub.ts';
import type { OutboxServices } from './outbox.ts';
import { wakeAt, type SessionRecord, type UnitOfWork } from './ports.ts';
import { Session } from './session.ts';
import type { SessionLink } from './session-link.ts';
import type { SharedHandoff } from './shared-handoff.ts';
import type { Wills } from './wills.ts';

const NEVER = 0xffffffff;

/** A CONNECT asking for a session (SessionManager.open). */
export interface OpenRequest {
  hubName: string;
  clientId: string;
  remoteAddress: string;
  packet: ConnectPacket;
  /** Session Expiry Interval granted (seconds). */
  expiryIntervalSec: number;
  /** The authenticated user id, if any. */
  userId?: string | undefined;
}

/** The outcome of SessionManager.open. */
export interface Opened {
  session: Session;
  sessionPresent: boolean;
  /** The commit to wait for before CONNACK; undefined when nothing is stored. */
  committed: Promise<void> | undefined;
  /** Put things back as they were when the commit failed and the CONNECT is refused. */
  undo(): void;
}

/** How a link ended, for the audit log. */
export interface CloseReason {
  by: InitiatedBy;
  reasonCode?: number;
}

/** Opens, detaches, expires and ends sessions. */
export class SessionManager {
  readonly #hubs: Hubs;
  readonly #services: OutboxServices;
  readonly #events: EventBus;
  readonly #wills: Wills;
  readonly #shared: SharedHandoff;
  readonly #nodeId: string;

  constructor(hubs: Hubs, services: OutboxServices, events: EventBus, wills: Wills, shared: SharedHandoff) {
    this.#hubs = hubs;
    this.#services = services;
    this.#events = events;
    this.#wills = wills;
    this.#shared = shared;
    this.#nodeId = services.options.nodeId;
  }

  /** A new, empty session (not registered in its hub). */
  create(hubName: string, clientId: string, packet: Pick<ConnectPacket, 'protocolVersion'>): Session {
    return new Session(this.#hubs.get(hubName), clientId, packet.protocolVersion, this.#services);
  }

  /** The stored row of a session, connected now or not. */
  record(session: Session, connected: boolean): SessionRecord {
    const now = this.#services.clock.now();
    return {
      hub: session.hub.name, clientId: session.clientId, protocolVersion: session.protocolVersion,
      expiryIntervalSec: session.expiryIntervalSec, connectedAtMs: connected ? now : null,
      disconnectedAtMs: connected ? null : (session.disconnectedAtMs ?? now), nodeId: this.#nodeId, userId: session.userId ?? null,
    };
  }

  /**
   * Find or create the session of a client id (taking over a live one [MQTT-3.1.4-3]). The caller
   * attaches its link once `committed` resolves.
   */
  open(req: OpenRequest): Opened {
    const { store, clock, logger } = this.#services;
    const hub = this.#hubs.get(req.hubName);
    const { clientId, packet } = req;
    const live = hub.sessions.get(clientId)?.link;
    if (live) {
      logger.info({ clientId, hub: hub.name }, 'session taken over');
      this.#events.emit({ type: EventType.Takeover, hub: hub.name, clientId, remoteAddress: req.remoteAddress, previousAddress: live.remoteAddress });
      live.end(ReasonCode.SessionTakenOver); // [MQTT-3.1.4-3]
    }
    let session = hub.sessions.get(clientId);
    const wasStored = session?.persistent ?? false;
    if (session && packet.cleanStart) {
      // [MQTT-3.1.2-4] clean start discards the existing session; the hub stays (the new session
      // goes into it: a hub forgotten here would leave the new session outside the registry)
      this.end(session, { keepHub: true });
      session = undefined;
    }
    const sessionPresent = session !== undefined; // [MQTT-3.2.2-2] [MQTT-3.2.2-3]
    const before = session && {
      will: session.will, disconnectedAtMs: session.disconnectedAtMs, expiryIntervalSec: session.expiryIntervalSec,
      persistent: session.persistent, protocolVersion: session.protocolVersion,
    };
    if (!session) {
      session = new Session(hub, clientId, packet.protocolVersion, this.#services);
      hub.putSession(session);
    } else {
      session.expiryTimer?.cancel();
      session.expiryTimer = undefined;
      // [MQTT-3.1.3-9] a new connection before the will delay elapses: the will is not published
      this.#wills.cancel(session);
      session.will = undefined;
    }
    session.protocolVersion = packet.protocolVersion;
    hub.setUser(session, req.userId);
    session.expiryIntervalSec = req.expiryIntervalSec;
    session.persistent = req.expiryIntervalSec > 0;
    session.disconnectedAtMs = undefined;
    session.connectedAtMs = this.#services.clock.now();
    if (packet.will) session.will = this.#wills.record(hub.name, clientId, packet);
    let committed: Promise<void> | undefined;
    if (session.persistent || wasStored) {
      const s = session;
      committed = store.transaction((tx) => {
        if (wasStored && (packet.cleanStart || !s.persistent)) tx.deleteSession(hub.name, clientId);
        if (!s.persistent) return;
        tx.putSession(this.record(s, true));
        if (s.will) tx.putWill(s.will);
        else tx.deleteWill(hub.name, clientId);
      });
    }
    const opened = session;
    const undo = (): void => {
      if (opened.isConnected || !opened.isCurrent) return;
      if (!before) {
        hub.removeAllSubscriptions(opened);
        hub.removeSession(opened);
        return;
      }
      Object.assign(opened, before);
      opened.disconnectedAtMs ??= clock.now();
      if (opened.will) this.#wills.schedule(opened);
      if (opened.persistent) this.scheduleExpiry(opened);
      else this.end(opened);
    };
    return { session, sessionPresent, committed, undo };
  }

  /** The link holding `session` is gone: schedule the will and the session's end. */
  detach(session: Session, link: SessionLink, reason: CloseReason | undefined, publishWill: boolean): void {
    if (!session.detach(link)) return;
    this.#disconnected(session, link.remoteAddress, reason, publishWill);
  }

  /**
   * A session opened (and stored) for a client that left before its CONNACK: it ends, or waits for
   * its expiry, like any disconnected session, rather than staying with no link and no timer. Its
   * will goes (the connection was never established).
   */
  settleUnattached(session: Session, remoteAddress: string): void {
    if (!session.isCurrent || session.isConnected) return;
    this.#disconnected(session, remoteAddress, undefined, false);
  }

  /** A session without a link from now on: audit, hand shared deliveries on, will, then expiry or end. */
  #disconnected(session: Session, remoteAddress: string, reason: CloseReason | undefined, publishWill: boolean): void {
    session.disconnectedAtMs = this.#services.clock.now();
    const by = reason?.by ?? 'network';
    this.#events.emit({
      type: EventType.Disconnect, hub: session.hub.name, clientId: session.clientId, remoteAddress,
      reasonCode: reason?.reasonCode, initiatedBy: by, willPublished: publishWill && session.will !== undefined,
    });
    this.#shared.redistribute(session);
    if (session.will && !publishWill) {
      session.will = undefined;
      if (session.persistent) this.persist(session, (tx) => tx.deleteWill(session.hub.name, session.clientId));
    }
    if (!session.persistent) {
      this.end(session);
      return;
    }
    this.persist(session, (tx) => tx.putSession(this.record(session, false)));
    if (session.will) this.#wills.schedule(session);
    this.scheduleExpiry(session);
  }

  /** Store a change of a session; a failure is logged (memory stays as it is). */
  persist(session: Session, build: (tx: UnitOfWork) => void): void {
    this.#services.store.transaction(build).catch((err: unknown) => {
      this.#services.logger.error({ err, clientId: session.clientId, hub: session.hub.name }, 'could not store session change');
    });
  }

  /**
   * End a disconnected session at disconnectedAtMs + its Session Expiry Interval (a stored time, so
   * the deadline holds across restarts); 0xFFFFFFFF never expires (MQTT 5 §3.1.2.11.2). The
   * timer is only a wake-up (wakeAt): intervals above 2^31-1 ms never reach setTimeout as such.
   */
  scheduleExpiry(session: Session): void {
    session.expiryTimer?.cancel();
    session.expiryTimer = undefined;
    if (session.expiryIntervalSec >= NEVER) return;
    const clock = this.#services.clock;
    const atMs = (session.disconnectedAtMs ?? clock.now()) + session.expiryIntervalSec * 1000;
    if (atMs <= clock.now()) {
      this.end(session);
      return;
    }
    session.expiryTimer = wakeAt(clock, atMs, () => {
      session.expiryTimer = undefined;
      if (session.isConnected) return;
      this.#events.emit({ type: EventType.SessionExpired, hub: session.hub.name, clientId: session.clientId });
      this.end(session);
    });
  }

  /** End a session: publish a pending will, drop its subscriptions and stored state. */
  end(session: Session, o: { keepHub?: boolean } = {}): void {
    if (!session.isCurrent) return;
    const hub = this.#hubs.get(session.hub.name);
    session.expiryTimer?.cancel();
    session.expiryTimer = undefined;
    if (session.will) this.#wills.publish(session);
    hub.removeAllSubscriptions(session);
    this.#shared.redistribute(session);
    hub.removeSession(session);
    if (session.persistent) this.persist(session, (tx) => tx.deleteSession(hub.name, session.clientId));
    session.persistent = false;
    this.#events.emit({ type: EventType.SessionEnded, hub: hub.name, clientId: session.clientId });
    // An empty hub is forgotten (it is made again on demand): connecting once to many hub names
    // must not use up the hub limit for good
    if (!o.keepHub) this.#hubs.forgetIfEmpty(hub);
  }

  /**
   * The client released an inbound QoS 2 id (PUBREL). The id is forgotten only once its delete
   * is committed (persistent sessions): until then a retransmitted PUBREL still finds it, and a
   * failed commit leaves memory and store agreeing. Returns that commit, or undefined when the id
   * was forgotten at once. Call `forgetInbound` once it resolves.
   */
  releaseInbound(session: Session, packetId: number): Promise<void> | undefined {
    if (!session.persistent || !session.inboundQos2.has(packetId)) {
      session.inboundQos2.delete(packetId);
      return undefined;
    }
    return this.#services.store.transaction((tx) => tx.deleteInboundQos2(session.hub.name, session.clientId, packetId));
  }

  /**
   * A QoS 2 PUBLISH whose commit failed: its id is forgotten in memory by the failure reply, and its
   * row deleted too, since the outcome may be unknown (a commit abandoned by the watchdog can still
   * have committed); otherwise, after a restart, a new PUBLISH reusing the id would be taken for a
   * duplicate and never routed.
   */
  dropFailedInbound(session: Session, packetId: number): void {
    const { name: hub } = session.hub;
    const { clientId } = session;
    this.#services.store.transaction((tx) => tx.deleteInboundQos2(hub, clientId, packetId))
      .catch((err: unknown) => this.#services.logger.warn({ err, clientId, packetId }, 'could not delete a failed QoS 2 packet id'));
  }

  /** Cancel every will and expiry timer (shutdown). */
  stopTimers(): void {
    for (const hub of this.#hubs.values()) {
      for (const s of hub.sessions.values()) {
        s.willTimer?.cancel();
        s.expiryTimer?.cancel();
      }
    }
  }
}
