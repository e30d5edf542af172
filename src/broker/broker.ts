// Broker: the engine's facade. Transports hand it connections; the REST API (later) publishes,
// subscribes sessions and disconnects clients through it. Owns hubs, routing and start-up.
import type { Message, QoS } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import { isValidHubName } from '../mqtt/hub-name.ts';
import { isTopicWithinLimits, isValidTopicName } from '../mqtt/topic.ts';
import { Connection } from './connection.ts';
import { Deliveries } from './deliveries.ts';
import { Hub } from './hub.ts';
import type { BrokerOptions } from './options.ts';
import type { AcceptInfo, Authenticator, Authorizer, ByteChannel, Clock, Logger, Store, Timer, UnitOfWork } from './ports.ts';
import { planRoute } from './router.ts';
import { SessionManager } from './session-manager.ts';
import { toDeliveryRecord, type Delivery, type EncodeCache, type Session } from './session.ts';
import type { AuditEvent, DeliveryRecord, IdBlock } from '../store/store.ts';

export interface BrokerDeps {
  options: BrokerOptions;
  store: Store;
  clock: Clock;
  logger: Logger;
  authenticator: Authenticator;
  authorizer: Authorizer;
}

/** True for a StoreError whose rows the database refused (StoreError.refused): retrying cannot succeed. */
function isRefused(e: unknown): boolean {
  return (e as { refused?: unknown } | null)?.refused === true;
}

/** True if the delivery of record `r` is still in flight (not acknowledged yet). */
function stillInFlight(pairs: ReadonlyArray<[Session, Delivery, Dispatch]>, r: DeliveryRecord): boolean {
  for (const [s, d] of pairs) if (d.id === r.id) return s.inflight.get(d.packetId) === d;
  return false;
}

/** What `RoutePlan.dispatch` does with one delivery. */
const enum Dispatch {
  /** Queue it (and send what the window allows). */
  Plain,
  /** As Plain, and it is counted in `session.pendingDispatch`. */
  Pending,
  /** Reserved at routing; send it after the commit (counted in `session.heldForCommit`). */
  Held,
  /** Reserved and already sent at routing. */
  Sent,
}

/** A routed message ready to be committed and dispatched (a class: no closures per message). */
export class RoutePlan {
  /** Resolves when the durable part is committed; undefined when nothing had to be stored. */
  committed: Promise<void> | undefined = undefined;
  readonly #broker: Broker;
  readonly #hub: Hub;
  readonly #message: Message;
  readonly #retain: boolean;
  readonly #pairs: Array<[Session, Delivery, Dispatch]>;
  #cache: EncodeCache | undefined;

  constructor(broker: Broker, hub: Hub, message: Message, retain: boolean, pairs: Array<[Session, Delivery, Dispatch]>, cache: EncodeCache | undefined) {
    this.#broker = broker;
    this.#hub = hub;
    this.#message = message;
    this.#retain = retain;
    this.#pairs = pairs;
    this.#cache = cache;
    if (retain && message.payload.length > 0) {
      hub.retainedPendingCount++;
      hub.retainedPendingBytes += message.payload.length;
    }
  }

  /** The retained message this plan stores is no longer pending (stored or abandoned). */
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
      // The hub again by name: an empty hub may have been forgotten while this message was committed
      const retained = this.#broker.hub(this.#hub.name).retained;
      if (message.payload.length > 0) retained.set(message.topicName, message);
      else retained.delete(message.topicName);
    }
    const deliveries = this.#broker.deliveries;
    const pairs = this.#pairs;
    const cache = pairs.length > 1 ? (this.#cache ??= new Map()) : this.#cache;
    for (const [s, d, how] of pairs) {
      switch (how) {
        case Dispatch.Sent: break;
        case Dispatch.Held: s.heldForCommit--; deliveries.sendReserved(s, d, cache); break;
        case Dispatch.Pending: s.pendingDispatch--; s.pendingDispatchBytes -= message.payload.length; deliveries.enqueue(s, d, cache); break;
        default: deliveries.enqueue(s, d, cache);
      }
    }
  }

  /** Undo what routing reserved, when `committed` failed: give back the window slots of deliveries that never left. */
  abandon(): void {
    this.#settleRetained();
    for (const [s, d, how] of this.#pairs) {
      if (how === Dispatch.Pending) {
        s.pendingDispatch--;
        s.pendingDispatchBytes -= d.message.payload.length;
      } else if (how === Dispatch.Held) {
        s.heldForCommit--;
        if (s.inflight.get(d.packetId) === d) s.inflight.delete(d.packetId);
        this.#broker.deliveries.pump(s);
      }
      // Dispatch.Sent: the client has it and will acknowledge it; it stays in flight
    }
  }
}

/** Per-address token bucket for the connection rate. */
interface Bucket {
  tokens: number;
  atMs: number;
}

/** The same address in the form both transports agree on (an IPv4-mapped IPv6 address as IPv4). */
function addressKey(remoteAddress: string): string {
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
}

export interface RouteOptions {
  /** Keep retrying a failed commit while this stays open (3.1.1 publishers: hold the acknowledgement). */
  retryWhileOpen?: { readonly isOpen: boolean };
}

export class Broker {
  readonly options: BrokerOptions;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly authorizer: Authorizer;
  readonly hubs = new Map<string, Hub>();
  readonly connections = new Set<Connection>();
  readonly deliveries: Deliveries;
  readonly sessions: SessionManager;
  #nextId: number;
  /** End of the id block in use (Store.reserveIds); the next block is reserved ahead at `#refillAt`. */
  #idLimit = Number.MAX_SAFE_INTEGER;
  #refillAt = -1;
  #spareIds: IdBlock | undefined;
  #reservingIds = false;
  #idsOverflowing = false;
  #sweep: Timer | undefined;
  #accepting = true;
  /** Open connections per remote address. */
  readonly #perAddress = new Map<string, number>();
  readonly #buckets = new Map<string, Bucket>();
  #lastBucketPruneMs = 0;
  /** Connections refused at accept, by reason (logged first and every 1000th). */
  readonly #refusedAtAccept = new Map<string, number>();
  /** Publishers not read from (or whose acknowledgements are held) until the store catches up. */
  readonly #throttled = new Set<Connection>();
  #backlogDrained: Promise<void> | undefined;

  constructor(deps: BrokerDeps) {
    this.options = deps.options;
    this.store = deps.store;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.authenticator = deps.authenticator;
    this.authorizer = deps.authorizer;
    this.deliveries = new Deliveries(this);
    this.sessions = new SessionManager(this);
    this.#nextId = deps.clock.now() * 1000;
  }

  /** A fresh id for messages and deliveries: from blocks the store reserves, never from the clock. */
  nextId(): number {
    if (this.#nextId >= this.#idLimit) this.#nextIdBlock();
    const id = this.#nextId++;
    if (id === this.#refillAt) this.#reserveIds();
    return id;
  }

  /** Move on to the block reserved ahead; without one, keep counting (unique on this node) until it comes. */
  #nextIdBlock(): void {
    const spare = this.#spareIds;
    this.#spareIds = undefined;
    if (spare && spare.first + spare.count > this.#nextId) {
      this.#nextId = Math.max(this.#nextId, spare.first);
      this.#idLimit = spare.first + spare.count;
      this.#refillAt = Math.max(this.#nextId, spare.first + (spare.count >> 1));
      return;
    }
    if (!this.#idsOverflowing) {
      this.logger.warn({ nextId: this.#nextId }, 'no id block reserved in time (is the store reachable?); counting on past the block until one is');
    }
    this.#idsOverflowing = true;
    this.#idLimit = Number.MAX_SAFE_INTEGER;
    this.#reserveIds();
  }

  #reserveIds(): void {
    if (this.#reservingIds) return;
    this.#reservingIds = true;
    this.store.reserveIds().then((block) => {
      this.#reservingIds = false;
      this.#spareIds = block;
      if (this.#idsOverflowing) {
        this.#idsOverflowing = false;
        this.#nextIdBlock();
      }
    }, (err: unknown) => {
      this.#reservingIds = false;
      this.logger.warn({ err }, 'could not reserve a block of ids; trying again shortly');
      this.#refillAt = this.#nextId + 1024;
    });
  }

  /** The key of the hub called `name` (hub names are case-insensitive); creates nothing. */
  hubKey(name: string): string {
    return name.toLowerCase();
  }

  /** The hub called `name` if it exists. */
  findHub(name: string): Hub | undefined {
    return this.hubs.get(name.toLowerCase());
  }

  /** Sessions in every hub. */
  get sessionCount(): number {
    let n = 0;
    for (const hub of this.hubs.values()) n += hub.sessions.size;
    return n;
  }

  /** The hub called `name` (hub names are case-insensitive), created on first use. */
  hub(name: string): Hub {
    const key = name.toLowerCase();
    let hub = this.hubs.get(key);
    if (!hub) {
      hub = new Hub(key);
      this.hubs.set(key, hub);
    }
    return hub;
  }

  /** Drop a hub that holds nothing: no session, subscription, retained message or session being opened. */
  forgetHubIfEmpty(hub: Hub): void {
    if (hub.sessions.size > 0 || hub.tree.size > 0 || hub.retained.size > 0 || hub.opening.size > 0 || hub.retainedPendingCount > 0) return;
    if (this.hubs.get(hub.name) === hub) this.hubs.delete(hub.name);
  }

  /** Rebuild memory from the store and start the keep-alive sweep. */
  async start(): Promise<void> {
    const t0 = performance.now();
    const state = await this.store.load();
    const loadedMs = performance.now() - t0;
    let maxId = 0;
    for (const m of state.messages) if (m.id > maxId) maxId = m.id;
    for (const d of state.deliveries) if (d.id > maxId) maxId = d.id;
    for (const m of state.retained) if (m.id > maxId) maxId = m.id;
    // Ids come from blocks the store reserves (above every stored id), not from the clock
    const block = await this.store.reserveIds();
    this.#nextId = Math.max(block.first, maxId + 1);
    this.#idLimit = block.first + block.count;
    this.#refillAt = Math.max(this.#nextId, block.first + (block.count >> 1));
    this.sessions.restore(state);
    this.logger.info({ loadMs: Math.round(loadedMs), restoreMs: Math.round(performance.now() - t0 - loadedMs) }, 'start-up state loaded');
    this.#sweep = this.clock.setInterval(() => this.#checkDeadlines(), 250);
  }

  /** Append an audit event through the group-commit writer; failures are logged, never thrown. */
  audit(event: Omit<AuditEvent, 'atMs'>): void {
    const e: AuditEvent = { ...event, atMs: this.clock.now() };
    this.store.transaction((tx) => tx.appendAudit(e))
      .catch((err: unknown) => this.logger.warn({ err, event: e.event, clientId: e.clientId }, 'could not write audit event'));
  }

  /**
   * Asked by transports before anything is read from a new connection (a TCP accept, a WebSocket
   * upgrade): false if it would exceed the connections in total or from its address, or its
   * address's connection rate (token bucket). Takes a token when it says yes.
   */
  admit(remoteAddress: string): boolean {
    if (!this.#accepting) return false;
    const opts = this.options;
    const address = addressKey(remoteAddress);
    const over = this.#overConnectionLimits(address);
    if (over) return this.#refuseAtAccept(address, over);
    const now = this.clock.now();
    let bucket = this.#buckets.get(address);
    if (!bucket) {
      bucket = { tokens: opts.connectionBurst, atMs: now };
      this.#buckets.set(address, bucket);
    } else {
      bucket.tokens = Math.min(opts.connectionBurst, bucket.tokens + ((now - bucket.atMs) / 1000) * opts.connectionRatePerSec);
      bucket.atMs = now;
    }
    if (bucket.tokens < 1) return this.#refuseAtAccept(address, 'connection rate');
    bucket.tokens -= 1;
    return true;
  }

  #overConnectionLimits(address: string): string | undefined {
    if (this.connections.size >= this.options.maxConnections) return 'connections in total';
    if ((this.#perAddress.get(address) ?? 0) >= this.options.maxConnectionsPerAddress) return 'connections per address';
    return undefined;
  }

  #refuseAtAccept(address: string, limit: string): false {
    const n = (this.#refusedAtAccept.get(limit) ?? 0) + 1;
    this.#refusedAtAccept.set(limit, n);
    // A flood must not become a flood of log lines: the first refusal, then every 1000th
    if (n === 1 || n % 1000 === 0) {
      this.logger.warn({ remoteAddress: address, limit, refused: n, connections: this.connections.size }, 'connection refused at accept');
    }
    return false;
  }

  /** Take a new client connection from a transport. */
  accept(channel: ByteChannel, info: AcceptInfo): Connection | undefined {
    if (!this.#accepting) {
      channel.close();
      return undefined;
    }
    // Checked again here: WebSocket upgrades admitted together may have opened meanwhile
    const address = addressKey(channel.remoteAddress);
    const over = this.#overConnectionLimits(address);
    if (over) {
      this.#refuseAtAccept(address, over);
      channel.close();
      return undefined;
    }
    const conn = new Connection(this, channel, info);
    this.connections.add(conn);
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    return conn;
  }

  /** Called by Connection once its socket is gone. */
  connectionClosed(conn: Connection, publishWill: boolean): void {
    if (!this.connections.delete(conn)) return;
    const address = addressKey(conn.channel.remoteAddress);
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n > 0) this.#perAddress.set(address, n);
    else this.#perAddress.delete(address);
    this.#throttled.delete(conn);
    this.sessions.detach(conn, publishWill);
  }

  /** Forget token buckets that have refilled: they hold nothing an absent entry would not. */
  #pruneBuckets(now: number): void {
    if (now - this.#lastBucketPruneMs < 10_000) return;
    this.#lastBucketPruneMs = now;
    const opts = this.options;
    for (const [address, b] of this.#buckets) {
      if (b.tokens + ((now - b.atMs) / 1000) * opts.connectionRatePerSec >= opts.connectionBurst) this.#buckets.delete(address);
    }
  }

  #checkDeadlines(): void {
    const now = this.clock.now();
    this.#pruneBuckets(now);
    for (const conn of this.connections) {
      if (conn.state === 'new' && now > conn.deadlineMs) conn.end(undefined); // connect timeout
      else if (conn.state === 'connected' && conn.keepAliveSec > 0 && now > conn.deadlineMs && !conn.readPaused) {
        conn.end(ReasonCode.KeepAliveTimeout); // [MQTT-3.1.2-22] 1.5 × keep alive without a packet
      }
    }
  }

  /**
   * Plan the fan-out of a message, including the retained-message update. Deliveries to
   * persistent sessions at QoS > 0, retained changes and `extra` go into one unit of work.
   */
  route(message: Message, extra?: (tx: UnitOfWork) => void, opts: RouteOptions = {}): RoutePlan {
    const hub = this.hub(message.hub);
    const targets = planRoute(hub, message);
    const pairs: Array<[Session, Delivery, Dispatch]> = [];
    let cache: EncodeCache | undefined; // created once a delivery is sent (fan-out shares encodings)
    // QoS 1 to an online persistent session may leave before the commit (see below), unless the
    // store is known to be failing: then nothing is sent ahead of a commit.
    const sendEarly = this.store.healthy;
    let records: DeliveryRecord[] | undefined;
    let sentAhead = false;
    for (const t of targets) {
      const s = t.session;
      if (t.qos === 0 && !s.connection) continue; // QoS 0 is not queued for offline sessions
      // Deliveries routed but still waiting for their commit count too (a burst would pass the limits otherwise)
      if (s.queue.length + s.pendingDispatch >= this.options.maxQueuedMessages || s.queue.bytes + s.pendingDispatchBytes + message.payload.length > this.options.maxQueuedBytes) {
        // Never silent: counted, logged and audited (first drop, then every 1000th)
        s.droppedCount++;
        if (s.droppedCount === 1 || s.droppedCount % 1000 === 0) {
          const queued = s.queue.length + s.pendingDispatch;
          const queuedBytes = s.queue.bytes + s.pendingDispatchBytes;
          this.logger.warn({ clientId: s.clientId, hub: hub.name, dropped: s.droppedCount, queued, queuedBytes }, 'session queue full; message dropped');
          this.audit({ hub: hub.name, event: 'queue_overflow', clientId: s.clientId, actor: 'broker', detail: { dropped: s.droppedCount, topicName: message.topicName, queued, queuedBytes } });
        }
        continue;
      }
      const d: Delivery = {
        id: this.nextId(), message, qos: t.qos, retain: t.retain, subscriptionIds: t.subscriptionIds, shareKey: t.shareKey,
        packetId: 0, state: 'queued',
      };
      let how = Dispatch.Plain;
      if (s.persistent && d.qos > 0) {
        // Online with room in its window: take the packet id now, so the row is stored as in flight
        // and no second commit is needed before the PUBLISH leaves.
        this.deliveries.reserve(s, d);
        if (d.state === 'queued') {
          how = Dispatch.Pending;
          s.pendingDispatch++;
          s.pendingDispatchBytes += message.payload.length;
        } else if (d.qos === 1 && sendEarly && s.heldForCommit === 0) {
          // At least once allows sending QoS 1 while its row is being committed: the row is queued
          // before the PUBACK can delete it, so a fast acknowledgement cancels the pair within the
          // same group commit. A crash before the commit means the publisher got no PUBACK and
          // sends again. QoS 2 must not: a resent PUBLISH would be a second, unknown flow.
          // (Sent below, once the unit holding its row is submitted: anything the send itself
          // does to the row, such as discarding a message too large for the client, comes after.)
          sentAhead = true;
          how = Dispatch.Sent;
        } else {
          how = Dispatch.Held;
          s.heldForCommit++;
        }
        const rec = toDeliveryRecord(s, d);
        if (how === Dispatch.Sent) rec.sentAhead = true;
        (records ??= []).push(rec);
      }
      pairs.push([s, d, how]);
    }
    const retain = message.retain && this.options.retainAvailable;
    let committed: Promise<void> | undefined;
    if (records || retain || extra) {
      const rows = records;
      // (the unit's builder is written inline: tsx names every function assigned to a variable, at a cost per call)
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
      }, opts.retryWhileOpen);
    }
    if (sentAhead) {
      if (pairs.length > 1) cache = new Map();
      for (const [s, d, how] of pairs) if (how === Dispatch.Sent) this.deliveries.sendReserved(s, d, cache);
    }
    const plan = new RoutePlan(this, hub, message, retain, pairs, cache);
    plan.committed = committed;
    return plan;
  }

  /**
   * Commit a unit of work; with `holder`, try again (250 ms, doubling to 2 s) while it stays open:
   * an acknowledgement held back until the store answers again. The first attempt is the plain
   * commit (no extra promise on the message path).
   */
  #commit(build: (tx: UnitOfWork) => void, holder: { readonly isOpen: boolean } | undefined): Promise<void> {
    if (!holder) return this.store.transaction(build);
    return this.store.transaction(build).catch(async (first: unknown) => {
      let err = first;
      // Rows the database refused are refused again: fail the request at once (never retried)
      for (let delayMs = 250; holder.isOpen && !isRefused(err); delayMs = Math.min(delayMs * 2, 2000)) {
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, delayMs));
        if (!holder.isOpen) break;
        try {
          await this.store.transaction(build);
          return;
        } catch (e) {
          err = e;
        }
      }
      throw err;
    });
  }

  /**
   * Called after a client's publish that waits for a commit: while the store's backlog is above its
   * limit, stop reading from that client (or hold its acknowledgements) until the backlog is down
   * to half the limit, instead of buffering what it sends without bound. O(1) when below the limit.
   */
  throttleIfBehind(conn: Connection): void {
    const o = this.options;
    if (this.store.backlogBytes <= o.maxStoreBacklogBytes && this.store.backlogUnits <= o.maxStoreBacklogUnits) return;
    if (this.#throttled.has(conn) || !conn.isOpen) return;
    if (!this.#backlogDrained) {
      this.logger.warn({ units: this.store.backlogUnits, bytes: this.store.backlogBytes }, 'PostgreSQL writer behind; reading from publishers paused');
      this.#backlogDrained = this.store.whenBacklogBelow(o.maxStoreBacklogUnits >> 1, Math.floor(o.maxStoreBacklogBytes / 2)).then(() => {
        this.#backlogDrained = undefined;
        this.logger.info({ connections: this.#throttled.size }, 'PostgreSQL writer caught up; reading from publishers resumed');
        for (const c of this.#throttled) c.resumeReading();
        this.#throttled.clear();
      });
    }
    this.#throttled.add(conn);
    conn.pauseReading(this.#backlogDrained);
  }

  /** Route, commit and dispatch a message; resolves with the number of receiving sessions. */
  async publish(message: Message, extra?: (tx: UnitOfWork) => void): Promise<number> {
    const plan = this.route(message, extra);
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

  /** Publish on behalf of the server (REST API, tools): QoS ≤ 2, no publisher id. */
  async publishFromServer(input: {
    hub: string; topicName: string; payload: Buffer; qos: QoS; retain?: boolean; messageExpiryIntervalSec?: number;
    properties?: Message['properties'];
  }): Promise<number> {
    if (!isValidTopicName(input.topicName) || !isTopicWithinLimits(input.topicName, this.options.maxTopicBytes, this.options.maxTopicLevels)) {
      throw new RangeError(`invalid topic name: ${input.topicName.slice(0, 100)}`);
    }
    if (!isValidHubName(input.hub)) throw new RangeError(`invalid hub name: ${input.hub.slice(0, 100)}`);
    const o = this.options;
    if (input.retain && this.hub(input.hub).retainedOverQuota(input.topicName, input.payload.length, o.maxRetainedMessages, o.maxRetainedBytes)) {
      throw new RangeError(`retained message limit of hub ${input.hub} reached`);
    }
    const now = this.clock.now();
    return this.publish({
      id: this.nextId(), hub: this.hub(input.hub).name, topicName: input.topicName, payload: input.payload, qos: input.qos,
      retain: input.retain ?? false, properties: input.properties, createdAtMs: now,
      expiresAtMs: input.messageExpiryIntervalSec ? now + input.messageExpiryIntervalSec * 1000 : undefined,
    });
  }

  /** Disconnect a client by id (5.0 clients get DISCONNECT with `reasonCode`). Returns false if not connected. */
  disconnectClient(hub: string, clientId: string, reasonCode: ReasonCode = ReasonCode.AdministrativeAction): boolean {
    const conn = this.findHub(hub)?.sessions.get(clientId)?.connection;
    if (!conn) return false;
    conn.end(reasonCode);
    return true;
  }

  /** Add a subscription to an existing session on behalf of the server. Returns false if no such session. */
  async subscribeSession(hub: string, clientId: string, topicFilter: string, qos: QoS): Promise<boolean> {
    const session = this.findHub(hub)?.sessions.get(clientId);
    if (!session) return false;
    await this.sessions.subscribe(session, {
      topicFilter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0,
    }, undefined);
    return true;
  }

  /**
   * Graceful shutdown: stop accepting, send 5.0 clients DISCONNECT 0x8B, close the rest and
   * stop timers. Transports must be closed by the caller first.
   */
  async shutdown(): Promise<void> {
    this.#accepting = false;
    this.#sweep?.cancel();
    for (const conn of [...this.connections]) conn.end(ReasonCode.ServerShuttingDown);
    this.sessions.stopTimers();
  }
}
