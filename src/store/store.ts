// The durable-state port. The engine reaches sessions, subscriptions, deliveries, retained
// messages and wills only through this interface; implementations group-commit units of work.
import type { Message, ProtocolVersion, QoS } from '../mqtt/packet.ts';

/** A stored session (only persistent sessions are stored). */
export interface SessionRecord {
  hub: string;
  clientId: string;
  protocolVersion: ProtocolVersion;
  /** Session Expiry Interval in seconds; 0xFFFFFFFF never expires. */
  expiryIntervalSec: number;
  /** Set while a connection holds the session (a crash leaves it set). */
  connectedAtMs: number | null;
  disconnectedAtMs: number | null;
  /** Node that owns the live session. */
  nodeId: string;
  /** User id of the client that opened the session (Web PubSub `userId`: sendToUser, filters), if any. */
  userId?: string | null;
}

/** A stored subscription; `topicFilter` keeps its `$share/{group}/` prefix. */
export interface SubscriptionRecord {
  hub: string;
  clientId: string;
  topicFilter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** Delivery states: waiting to be sent, sent and unacknowledged, PUBREC received (QoS 2). */
export type DeliveryState = 'queued' | 'sent' | 'pubrec';

/** One obligation to deliver a stored message to one session. */
export interface DeliveryRecord {
  id: number;
  hub: string;
  clientId: string;
  messageId: number;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[];
  /** `{shareName}/{topicFilter}` for deliveries of a shared subscription. */
  shareKey: string | undefined;
  packetId: number;
  state: DeliveryState;
  /** Not stored: a QoS 1 PUBLISH already sent ahead of this row's commit, whose PUBACK may cancel it. */
  sentAhead?: boolean;
}

/** A will waiting for its session's connection to end (or for its delay after that). */
export interface WillRecord {
  hub: string;
  clientId: string;
  /** The will as a message; its id and times are set again when it is published. */
  message: Message;
  delayIntervalSec: number;
  /** Message Expiry Interval of the will, counted from publication. */
  messageExpiryIntervalSec: number | undefined;
}

/** An inbound QoS 2 packet id whose PUBREL has not arrived yet. */
export interface InboundQos2Record {
  hub: string;
  clientId: string;
  packetId: number;
}

/** One row of the append-only audit trail (DESIGN.md §6). */
export interface AuditEvent {
  hub: string;
  /** connect, connect_refused, disconnect, takeover, subscribe, unsubscribe, session_expired, queue_overflow, ... */
  event: string;
  clientId?: string;
  actor?: string;
  remoteAddress?: string;
  reasonCode?: number;
  detail?: Record<string, unknown>;
  atMs: number;
}

/** A stored audit row, with the id that orders the trail. */
export interface AuditRecord extends AuditEvent {
  id: number;
}

/** A filtered read of the audit trail, newest first; every field is optional but `limit`. */
export interface AuditQuery {
  /** Inclusive lower and exclusive upper bound of `atMs`. */
  fromMs?: number;
  toMs?: number;
  hub?: string;
  clientId?: string;
  actor?: string;
  event?: string;
  /** Only rows with an id below this (the previous page's `nextCursor`). */
  beforeId?: number;
  limit: number;
}

/** One page of audit rows; `nextCursor` is set while older rows may match. */
export interface AuditPage {
  rows: AuditRecord[];
  nextCursor: number | undefined;
}

/** Who a permission is granted to: today a connection (an MQTT client id); users are reserved. */
export type PermissionSubjectKind = 'connection' | 'user';

/** A right granted at runtime (Web PubSub grantPermission): `permission` on group `target` (null: every group). */
export interface PermissionRecord {
  hub: string;
  subjectKind: PermissionSubjectKind;
  subject: string;
  /** 'sendToGroup' | 'joinLeaveGroup'. */
  permission: string;
  target: string | null;
  grantedBy: string | undefined;
  grantedAtMs: number;
}

/** Settings of one hub; a null field follows the deployment default. */
export interface HubSettingsRecord {
  hub: string;
  /** 'allow' | 'deny' | null. */
  anonymousConnectPolicy: 'allow' | 'deny' | null;
  /** Largest MQTT keep alive in seconds (sent as Server Keep Alive to 5.0 clients); null: the deployment's. */
  maxKeepAliveSec: number | null;
  /** Sessions this hub may hold; null: only the deployment-wide limit. */
  maxSessions: number | null;
  updatedAtMs: number;
}

/** Grants and hub settings, read at start-up and kept in memory. */
export interface StoredAccess {
  permissions: PermissionRecord[];
  hubSettings: HubSettingsRecord[];
}

/** Everything a broker node needs to rebuild its memory at start-up. */
export interface StoredState {
  sessions: SessionRecord[];
  subscriptions: SubscriptionRecord[];
  messages: Message[];
  deliveries: DeliveryRecord[];
  retained: Message[];
  wills: WillRecord[];
  inboundQos2: InboundQos2Record[];
}

/** Write operations of one unit of work; applied atomically and in call order. */
export interface UnitOfWork {
  putSession(session: SessionRecord): void;
  /** Delete a session with its subscriptions, deliveries, will and inbound QoS 2 ids. */
  deleteSession(hub: string, clientId: string): void;
  putSubscription(subscription: SubscriptionRecord): void;
  deleteSubscription(hub: string, clientId: string, topicFilter: string): void;
  /** Insert a message once; deliveries and retained entries reference it. Idempotent. */
  insertMessage(message: Message): void;
  enqueueDeliveries(deliveries: DeliveryRecord[]): void;
  updateDelivery(id: number, packetId: number, state: DeliveryState): void;
  deleteDelivery(id: number): void;
  putRetained(message: Message): void;
  deleteRetained(hub: string, topicName: string): void;
  putWill(will: WillRecord): void;
  deleteWill(hub: string, clientId: string): void;
  addInboundQos2(record: InboundQos2Record): void;
  deleteInboundQos2(hub: string, clientId: string, packetId: number): void;
  appendAudit(event: AuditEvent): void;
  /** Grant a permission (no-op if the same grant exists). */
  grantPermission(record: PermissionRecord): void;
  /** Revoke one grant (same subject, permission and target). */
  revokePermission(hub: string, subjectKind: PermissionSubjectKind, subject: string, permission: string, target: string | null): void;
  /** Revoke every grant of a subject (its session ended). */
  revokeAllPermissions(hub: string, subjectKind: PermissionSubjectKind, subject: string): void;
  putHubSettings(record: HubSettingsRecord): void;
}

/** The durable home of broker state. */
export interface Store {
  /** Short name for logs ("memory", "postgres"). */
  readonly kind: string;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Everything stored, for start-up. */
  load(): Promise<StoredState>;
  /** Grants and hub settings. */
  loadAccess(): Promise<StoredAccess>;
  /** Read committed audit rows matching `q`, newest first (admin API). */
  queryAudit(q: AuditQuery): Promise<AuditPage>;
  /**
   * Build a unit of work synchronously and commit it. Units from many callers share one
   * commit; the promise resolves (in submission order) once the unit is durable.
   * `fate`: units submitted one right after the other with the same key (say, one connection's
   * publishes) may be committed as one: they share one promise and succeed or fail together, so
   * only a key whose units may all be refused for one of them should be given (a store may ignore it).
   */
  transaction(build: (tx: UnitOfWork) => void, fate?: object): Promise<void>;
  /** False while commits are failing (the database is unreachable); true again after one succeeds. */
  readonly healthy: boolean;
  /**
   * Reserve a block of ids for messages and deliveries: `count` ids from `first`, never handed out
   * again by this store (across restarts and nodes), whatever the wall clock does. Every block is
   * above every id stored when it is reserved.
   */
  reserveIds(): Promise<IdBlock>;
  /** Units of work submitted and not yet settled (committed or failed), and the bytes they carry. */
  readonly backlogUnits: number;
  readonly backlogBytes: number;
  /** Resolves once the backlog is at most `units` units and `bytes` bytes. */
  whenBacklogBelow(units: number, bytes: number): Promise<void>;
}

/** A block of ids reserved by `Store.reserveIds`: first, first + 1, ..., first + count - 1. */
export interface IdBlock {
  first: number;
  count: number;
}

/** A store failure; keeps the driver's error as `cause`. */
export class StoreError extends Error {
  /**
   * The database refused the unit's own rows (say a key too long for its index): trying the same
   * unit again fails again, so callers must not retry it. False for lost connections, timeouts etc.
   */
  readonly refused: boolean;

  constructor(message: string, options?: { cause?: unknown; refused?: boolean }) {
    super(message, options);
    this.name = 'StoreError';
    this.refused = options?.refused ?? false;
  }
}
