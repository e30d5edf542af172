// Session: the state that outlives a network connection (MQTT 5 §4.1): subscriptions, the
// outbox of queued and in-flight deliveries, inbound QoS 2 ids awaiting PUBREL, the will and
// expiry. Whatever is attached reaches it as a SessionLink; it knows nothing of connections.
import type { Message, ProtocolVersion, QoS } from '../mqtt/packet.ts';
import type { RetainedTree } from '../mqtt/topic-tree.ts';
import type { Timer, WillRecord } from './ports.ts';
import { Outbox, type OutboxServices } from './outbox.ts';
import type { SessionLink } from './session-link.ts';

/** A session's subscription to one filter (a shared one keeps its `$share/...` form in `key`). */
export interface Subscription {
  kind: 'subscription';
  session: Session;
  /** The filter as subscribed, e.g. `a/+` or `$share/g/a/+`. */
  key: string;
  /** The filter that is matched (without `$share/{group}/`). */
  topicFilter: string;
  shareName: string | undefined;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** The members of one `$share/{shareName}/{topicFilter}` group in a hub. */
export interface SharedGroup {
  kind: 'shared';
  /** `{shareName}/{topicFilter}`. */
  key: string;
  shareName: string;
  topicFilter: string;
  members: Subscription[];
  next: number;
}

/** One planned delivery of a routed message (router.ts). */
export interface RouteTarget {
  session: Session;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | undefined;
  shareKey: string | undefined;
}

/** What a session knows of its hub (hub.ts implements it). */
export interface SessionHub {
  readonly name: string;
  readonly sessions: ReadonlyMap<string, Session>;
  readonly retained: RetainedTree<Message>;
  readonly sharedGroups: ReadonlyMap<string, SharedGroup>;
  /** Would a retained message of `payloadBytes` at `topicName` go over the hub's caps? */
  retainedOverQuota(topicName: string, payloadBytes: number, maxMessages: number, maxBytes: number): boolean;
}

/** The state of one client id in one hub. */
export class Session {
  readonly hub: SessionHub;
  readonly clientId: string;
  protocolVersion: ProtocolVersion;
  /** Stored durably: Session Expiry Interval > 0 (5.0) or clean session 0 (3.1.1). */
  persistent = false;
  /** Seconds the session outlives its connection; 0xFFFFFFFF never expires. */
  expiryIntervalSec = 0;
  readonly subscriptions = new Map<string, Subscription>();
  /** Queued and in-flight outbound deliveries, and the link they leave through. */
  readonly outbox: Outbox;
  #inboundQos2: Set<number> | undefined;
  will: WillRecord | undefined;
  willTimer: Timer | undefined;
  expiryTimer: Timer | undefined;
  disconnectedAtMs: number | undefined;
  /** When the connection holding it opened or resumed it (admin API). */
  connectedAtMs: number | undefined;
  /** User id of the client that opened (or last resumed) the session: Web PubSub `userId`. */
  userId: string | undefined = undefined;
  /** planRoute's scratch: the stamp of the last call that planned for this session, and its target. */
  routeStamp = 0;
  routeTarget: RouteTarget | undefined = undefined;

  constructor(hub: SessionHub, clientId: string, protocolVersion: ProtocolVersion, services: OutboxServices) {
    this.hub = hub;
    this.clientId = clientId;
    this.protocolVersion = protocolVersion;
    this.outbox = new Outbox(this, services);
  }

  /** Inbound QoS 2 packet ids whose PUBREL has not arrived [MQTT-4.3.3-8]. */
  get inboundQos2(): Set<number> {
    return (this.#inboundQos2 ??= new Set());
  }

  /** Inbound QoS 2 ids awaiting PUBREL (without creating the set). */
  get inboundQos2Count(): number {
    return this.#inboundQos2?.size ?? 0;
  }

  /** The connection (or other front end) attached, if any. */
  get link(): SessionLink | undefined {
    return this.outbox.link;
  }

  /** A connection (or other front end) takes the session: deliveries leave through `link` from now on. */
  attach(link: SessionLink): void {
    this.outbox.link = link;
  }

  /** `link` is gone; false if another link holds the session meanwhile (a takeover). */
  detach(link: SessionLink): boolean {
    if (this.outbox.link !== link) return false;
    this.outbox.link = undefined;
    return true;
  }

  /** True while a connection holds the session. */
  get isConnected(): boolean {
    return this.outbox.link !== undefined;
  }

  /** True while this object is the hub's session for its client id (not ended or replaced). */
  get isCurrent(): boolean {
    return this.hub.sessions.get(this.clientId) === this;
  }
}
