// Broker: the engine's facade. Transports hand it connections; the REST API (later) and tools
// publish, subscribe and unsubscribe sessions, disconnect clients and list sessions through it.
// It wires the engine's parts together and runs start-up and shutdown.
import type { Message, QoS } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import { hasWildcard, parseSharedFilter } from '../mqtt/topic.ts';
import { validateSubscriptionFilter } from '../mqtt/validate.ts';
import { Admission } from './admission.ts';
import {
  engineTotals, retainedPage, retainedView, sessionDetail, sessionPage, type EngineTotals, type Page, type RetainedView, type SessionDetail, type SessionQuery,
  type SessionSummary,
} from './admin-views.ts';
export type { Page, RetainedView, SessionDetail, SessionQuery, SessionSummary } from './admin-views.ts';
import { Connection, type ConnectionHost } from './connection.ts';
import type { Engine } from './context.ts';
import { EventBus } from './events.ts';
import { Hubs, type Hub } from './hub.ts';
import { IdSource } from './ids.ts';
import type { BrokerOptions } from './options.ts';
import type { OutboxServices } from './outbox.ts';
import type { AcceptInfo, Authenticator, Authorizer, ByteChannel, Clock, Logger, Principal, Store, Timer } from './ports.ts';
import { PublishPath } from './publish-path.ts';
import { ServerSends, sessionView, type Receivers, type ServerMessage, type ServerPublish, type SessionView } from './server-sends.ts';
import { maxStoredId, restoreState } from './restore.ts';
import { SessionManager } from './session-manager.ts';
import { SharedHandoff } from './shared-handoff.ts';
import { newMessageStats, type MessageStats } from './stats.ts';
import { Subscriptions } from './subscriptions.ts';
import { Wills } from './wills.ts';

/** What the broker is built from (main.ts and tests construct these). */
export interface BrokerDeps {
  options: BrokerOptions;
  store: Store;
  clock: Clock;
  logger: Logger;
  authenticator: Authenticator;
  authorizer: Authorizer;
  /** Where broker events go (the audit log subscribes in main.ts); a bus with no subscriber when absent. */
  events?: EventBus;
}

export { SERVER_MESSAGES_TOPIC, type Receivers, type ServerMessage, type ServerPublish, type SessionView } from './server-sends.ts';

/** The engine's facade for transports, the API and tools. */
export class Broker implements ConnectionHost {
  readonly options: BrokerOptions;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Broker events; subscribe a sink to receive them (EventBus.subscribe). */
  readonly events: EventBus;
  /** What connections and handlers use of the engine. */
  readonly engine: Engine;
  readonly connections = new Set<Connection>();
  readonly #hubs: Hubs;
  readonly #services: OutboxServices;
  readonly #ids: IdSource;
  readonly #sends: ServerSends;
  readonly #wills: Wills;
  readonly #admission: Admission;
  #sweep: Timer | undefined;
  #accepting = true;

  constructor(deps: BrokerDeps) {
    const { options, store, clock, logger } = deps;
    this.options = options;
    this.store = store;
    this.clock = clock;
    this.logger = logger;
    this.events = deps.events ?? new EventBus(logger);
    const hubs = (this.#hubs = new Hubs());
    const ids = (this.#ids = new IdSource(store, clock, logger));
    const services: OutboxServices = (this.#services = { store, clock, options, logger, events: this.events, stats: newMessageStats() });
    const publishing = new PublishPath({ options, store, clock, logger, hubs, ids, events: this.events, stats: services.stats });
    this.#wills = new Wills(publishing, ids, clock, logger);
    this.#sends = new ServerSends({ options, store, clock, hubs, ids, publishing });
    const shared = new SharedHandoff(store, logger, ids);
    const sessions = new SessionManager(hubs, services, this.events, this.#wills, shared);
    const subscriptions = new Subscriptions(hubs, services, ids);
    this.engine = {
      options, clock, logger, authenticator: deps.authenticator, authorizer: deps.authorizer, events: this.events,
      stats: services.stats, hubs, ids, publishing, sessions, subscriptions,
    };
    this.#admission = new Admission(options, clock, logger);
  }

  /** Message-flow counters (PUBLISH received and sent, by QoS), read by metrics. */
  get stats(): Readonly<MessageStats> {
    return this.#services.stats;
  }

  /** The hubs by key (names are case-insensitive). */
  get hubs(): ReadonlyMap<string, Hub> {
    return this.#hubs.byKey;
  }

  /** The hub called `name` if it exists. */
  findHub(name: string): Hub | undefined {
    return this.#hubs.find(name);
  }

  /** Whether `clientId` has a session in `hub` (connected or not). */
  hasSession(hub: string, clientId: string): boolean {
    return this.findHub(hub)?.sessions.has(clientId) ?? false;
  }

  /** The principal of the connection holding that session, if one does. */
  principalOf(hub: string, clientId: string): Principal | undefined {
    return this.findHub(hub)?.sessions.get(clientId)?.link?.principal;
  }

  /** The hub called `name`, created on first use. */
  hub(name: string): Hub {
    return this.#hubs.get(name);
  }

  /** Sessions in every hub. */
  get sessionCount(): number {
    return this.#hubs.sessionCount;
  }

  /** Rebuild memory from the store and start the keep-alive sweep. */
  async start(): Promise<void> {
    const t0 = performance.now();
    const state = await this.store.load();
    const loadedMs = performance.now() - t0;
    // Ids come from blocks the store reserves (above every stored id), not from the clock
    await this.#ids.start(maxStoredId(state));
    restoreState(state, { hubs: this.#hubs, sessions: this.engine.sessions, wills: this.#wills, logger: this.logger, nowMs: this.clock.now() });
    this.logger.info({ loadMs: Math.round(loadedMs), restoreMs: Math.round(performance.now() - t0 - loadedMs) }, 'start-up state loaded');
    this.#sweep = this.clock.setInterval(() => this.#checkDeadlines(), 250);
  }

  /**
   * Asked by transports before anything is read from a new connection (a TCP accept, a WebSocket
   * upgrade): false if it would exceed the connection limits or its address's connection rate.
   */
  admit(remoteAddress: string): boolean {
    return this.#accepting && this.#admission.admit(remoteAddress);
  }

  /** Take a new client connection from a transport. */
  accept(channel: ByteChannel, info: AcceptInfo): Connection | undefined {
    if (!this.#accepting || !this.#admission.open(channel.remoteAddress)) {
      channel.close();
      return undefined;
    }
    const conn = new Connection(this, channel, info);
    this.connections.add(conn);
    return conn;
  }

  /** ConnectionHost: a connection's socket is gone. */
  connectionClosed(conn: Connection, publishWill: boolean): void {
    if (!this.connections.delete(conn)) return;
    this.#admission.closed(conn.channel.remoteAddress);
    this.engine.publishing.forget(conn);
    const session = conn.session;
    if (session) this.engine.sessions.detach(session, conn, conn.closeReason, publishWill);
  }

  #checkDeadlines(): void {
    const now = this.clock.now();
    this.#admission.prune();
    for (const conn of this.connections) {
      if (conn.state === 'new' && now > conn.deadlineMs) conn.end(undefined); // connect timeout
      else if (conn.state === 'connected' && conn.keepAliveSec > 0 && now > conn.deadlineMs && !conn.readPaused) {
        conn.end(ReasonCode.KeepAliveTimeout); // [MQTT-3.1.2-22] 1.5 × keep alive without a packet
      }
    }
  }

  /** Route, commit and dispatch a message; resolves with the number of receiving sessions. */
  publish(message: Message): Promise<number> {
    return this.engine.publishing.publish(message);
  }

  /** Publish on behalf of the server (REST API, tools): QoS ≤ 2, no publisher id. */
  publishFromServer(input: ServerPublish): Promise<number> {
    return this.#sends.publish(input);
  }

  /** One session as the REST API sees it. */
  sessionView(hub: string, clientId: string): SessionView | undefined {
    const s = this.findHub(hub)?.sessions.get(clientId);
    return s && sessionView(s);
  }

  /** The sessions of a user (user index; none when the hub does not exist). */
  sessionsOfUser(hub: string, userId: string): SessionView[] {
    const h = this.findHub(hub);
    return h ? [...h.sessionsOfUser(userId)].map(sessionView) : [];
  }

  /** Members of a group (sessions subscribed to exactly that topic) in client id order, after `after`, at most `limit`; `more` if others follow. */
  groupPage(hub: string, group: string, after: string | undefined, limit: number): { members: SessionView[]; more: boolean } {
    const members: SessionView[] = [];
    const h = this.findHub(hub);
    if (!h) return { members, more: false };
    for (const s of h.groupMembers(group, after)) {
      if (members.length === limit) return { members, more: true };
      members.push(sessionView(s));
    }
    return { members, more: false };
  }

  /** Whether a group has a member. */
  hasGroup(hub: string, group: string): boolean {
    return this.findHub(hub)?.hasGroupMembers(group) ?? false;
  }

  /** Every session of the hub (a send to all, a close of all: the whole hub is the work asked for). */
  allSessions(hub: string): SessionView[] {
    const h = this.findHub(hub);
    return h ? [...h.sessions.values()].map(sessionView) : [];
  }

  /** Server message on `$webpubsub/server/messages` to `to`, leaving out those `accept` refuses (see ServerSends.toSessions). */
  async sendToSessions(hub: string, to: Receivers, m: ServerMessage, accept?: (s: SessionView) => boolean): Promise<number> {
    const h = this.findHub(hub);
    return h ? this.#sends.toSessions(h, to, m, accept) : 0;
  }

  /** Server message to a group (see ServerSends.toGroup); RangeError for a group that cannot be a topic. */
  async sendToGroup(hub: string, group: string, m: ServerMessage, accept?: (s: SessionView) => boolean): Promise<number> {
    this.#sends.checkGroup(group);
    const h = this.findHub(hub);
    return h ? this.#sends.toGroup(h, group, m, accept) : 0;
  }

  /**
   * Close a session for good (Web PubSub closeConnection): a 5.0 client gets DISCONNECT 0x98 with
   * `reason` as its Reason String, a 3.1.1 client is closed; the session then ends (its will is
   * published, as after any close the client did not ask for). False if there is no such session.
   */
  closeSession(hub: string, clientId: string, reason?: string): boolean {
    const session = this.findHub(hub)?.sessions.get(clientId);
    if (!session) return false;
    const link = session.link;
    if (link?.isReady) {
      // Expire at once when the connection is gone (the stored row goes with it)
      session.expiryIntervalSec = 0;
      link.end(ReasonCode.AdministrativeAction, reason);
    } else if (!link) {
      this.engine.sessions.end(session);
    }
    return true;
  }

  /** Disconnect a client by id (5.0 clients get DISCONNECT with `reasonCode` and `reason`). Returns false if not connected. */
  disconnectClient(hub: string, clientId: string, reasonCode: ReasonCode = ReasonCode.AdministrativeAction, reason?: string): boolean {
    const link = this.findHub(hub)?.sessions.get(clientId)?.link;
    if (!link) return false;
    link.end(reasonCode, reason);
    return true;
  }

  /** Add a subscription to an existing session on behalf of the server. Returns false if no such session. */
  async subscribeSession(hub: string, clientId: string, topicFilter: string, qos: QoS): Promise<boolean> {
    const session = this.findHub(hub)?.sessions.get(clientId);
    if (!session) return false;
    // The same rules as a client's SUBSCRIBE: the filter must be one this broker takes
    const o = this.options;
    const shared = parseSharedFilter(topicFilter);
    if (validateSubscriptionFilter(topicFilter, false, o) !== undefined || (shared && !o.sharedSubscriptionAvailable)
      || (!o.wildcardSubscriptionAvailable && hasWildcard(shared ? shared.topicFilter : topicFilter))) {
      throw new RangeError(`not a topic filter this broker takes: ${topicFilter.slice(0, 100)}`);
    }
    if (!session.subscriptions.has(topicFilter) && session.subscriptions.size >= o.maxSubscriptionsPerSession) {
      throw new RangeError(`session ${clientId} has the most subscriptions allowed (${o.maxSubscriptionsPerSession})`);
    }
    await this.engine.subscriptions.subscribe(session, {
      topicFilter, qos: Math.min(qos, o.maximumQos) as QoS, noLocal: false, retainAsPublished: false, retainHandling: 0,
    }, undefined);
    return true;
  }

  /**
   * Remove a session's subscription on behalf of the server. Resolves false if there is no such
   * session or subscription; rejects (the subscription kept) if its removal could not be stored.
   */
  async unsubscribeSession(hub: string, clientId: string, topicFilter: string): Promise<boolean> {
    const session = this.findHub(hub)?.sessions.get(clientId);
    if (!session) return false;
    const { found, committed, undo } = this.engine.subscriptions.unsubscribe(session, [topicFilter]);
    try {
      await committed;
    } catch (err) {
      undo();
      throw err;
    }
    return found[0] === true;
  }

  /** A page of sessions (admin API; see sessionPage). */
  listSessions(q: SessionQuery): Page<SessionSummary, [string, string]> {
    const hubs = q.hub === undefined ? [...this.#hubs.values()] : [this.findHub(q.hub)].filter((h): h is Hub => h !== undefined);
    return sessionPage(hubs, q);
  }

  /** One session in detail (admin API): subscriptions with options, queue, in-flight, will, connection. */
  sessionDetail(hub: string, clientId: string): SessionDetail | undefined {
    const h = this.findHub(hub);
    const s = h?.sessions.get(clientId);
    return h && s && sessionDetail(h, s);
  }

  /**
   * A page of the live retained messages of a hub whose topic names match `topicFilter`, in topic
   * order after `after` (see retainedPage). Throws RangeError for a filter that is not a valid
   * (non-shared) topic filter.
   */
  retainedMessages(hub: string, topicFilter: string, after: string | undefined, limit: number): Page<RetainedView, string> {
    if (parseSharedFilter(topicFilter) !== undefined || validateSubscriptionFilter(topicFilter, false, this.options) !== undefined) {
      throw new RangeError(`not a topic filter: ${topicFilter.slice(0, 100)}`);
    }
    return retainedPage(this.findHub(hub), topicFilter, after, limit, this.clock.now());
  }

  /** The live retained message at `topicName`, if any. */
  retainedMessage(hub: string, topicName: string): RetainedView | undefined {
    const m = this.findHub(hub)?.retained.get(topicName);
    return m && retainedView(m, this.clock.now());
  }

  /** Totals across hubs, connections and the store's health and backlog (admin stats). */
  totals(): EngineTotals & { connections: number; store: { kind: string; healthy: boolean; backlogUnits: number; backlogBytes: number } } {
    const s = this.store;
    return {
      connections: this.connections.size, ...engineTotals(this.#hubs.values()),
      store: { kind: s.kind, healthy: s.healthy, backlogUnits: s.backlogUnits, backlogBytes: s.backlogBytes },
    };
  }

  /**
   * Graceful shutdown: stop accepting, send 5.0 clients DISCONNECT 0x8B, close the rest and
   * stop timers. Transports must be closed by the caller first.
   */
  async shutdown(): Promise<void> {
    this.#accepting = false;
    this.#sweep?.cancel();
    for (const conn of [...this.connections]) conn.end(ReasonCode.ServerShuttingDown);
    this.engine.sessions.stopTimers();
  }
}
