// Drizzle schema of the durable state (DESIGN.md §3, §6). SQL migrations are generated from it
// into the top-level migrations/ by drizzle-kit. Times are epoch milliseconds (`*_ms`), except
// audit and permission rows, which carry timestamptz for SQL readers.
import { sql } from 'drizzle-orm';
import {
  bigint, bigserial, boolean, customType, index, integer, jsonb, pgSequence, pgTable, primaryKey, smallint, text, timestamp, uniqueIndex,
} from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });
const ms = (name: string) => bigint(name, { mode: 'number' });

/**
 * Blocks of message and delivery ids (Store.reserveIds): each nextval is the first id of a block of
 * `increment` ids no other caller gets, so ids never depend on a node's clock (DESIGN.md §7).
 */
export const idBlocks = pgSequence('id_blocks', { startWith: 1, increment: 1048576, minValue: 1 });

/** Persistent sessions (MQTT 5 expiry > 0, or 3.1.1 clean session 0). */
export const sessions = pgTable('sessions', {
  hub: text().notNull(),
  clientId: text().notNull(),
  protocolVersion: smallint().notNull(),
  expiryIntervalSec: bigint({ mode: 'number' }).notNull(),
  /** Set while a connection holds the session; still set after a crash. */
  connectedAtMs: ms('connected_at_ms'),
  disconnectedAtMs: ms('disconnected_at_ms'),
  /** Broker node that owns the live session. */
  nodeId: text().notNull(),
  /** User id of the client that opened it (Web PubSub userId), if any. */
  userId: text(),
}, (t) => [primaryKey({ columns: [t.hub, t.clientId] })]);

export const subscriptions = pgTable('subscriptions', {
  hub: text().notNull(),
  clientId: text().notNull(),
  /** As subscribed, including a `$share/{group}/` prefix. */
  topicFilter: text().notNull(),
  qos: smallint().notNull(),
  noLocal: boolean().notNull(),
  retainAsPublished: boolean().notNull(),
  retainHandling: smallint().notNull(),
  subscriptionId: integer(),
}, (t) => [primaryKey({ columns: [t.hub, t.clientId, t.topicFilter] })]);

/** Application messages, stored once; deliveries reference them. */
export const messages = pgTable('messages', {
  id: bigint({ mode: 'number' }).primaryKey(),
  hub: text().notNull(),
  topicName: text().notNull(),
  payload: bytea().notNull(),
  qos: smallint().notNull(),
  retain: boolean().notNull(),
  /** MQTT 5 message properties (correlation data base64-encoded). */
  properties: jsonb(),
  expiresAtMs: ms('expires_at_ms'),
  publisherId: text(),
  createdAtMs: ms('created_at_ms').notNull(),
});

/**
 * One obligation to deliver a message to one session: queued, sent, or PUBREC received. A message
 * that only this delivery references when it is committed travels inside the row (`message_*`,
 * payload not null) instead of in a `messages` row of its own: one row per durable message instead
 * of two (migrations/0006). `message_id` is set either way.
 */
export const deliveries = pgTable('deliveries', {
  id: bigint({ mode: 'number' }).primaryKey(),
  hub: text().notNull(),
  clientId: text().notNull(),
  messageId: bigint({ mode: 'number' }).notNull(),
  qos: smallint().notNull(),
  retain: boolean().notNull(),
  subscriptionIds: integer().array().notNull(),
  shareKey: text(),
  packetId: integer().notNull(),
  state: text().notNull(),
  /** The message carried inline (all null when it is in `messages`); qos and retain as published. */
  messageTopicName: text(),
  messagePayload: bytea(),
  messageQos: smallint(),
  messageRetain: boolean(),
  messageProperties: jsonb(),
  messageExpiresAtMs: ms('message_expires_at_ms'),
  messagePublisherId: text(),
  messageCreatedAtMs: ms('message_created_at_ms'),
}, (t) => [
  index('deliveries_session_idx').on(t.hub, t.clientId),
  // Only deliveries whose message is in `messages` are looked up by message (garbage collection,
  // start-up); one that carries its message has no entry, which spares an index insert per message
  index('deliveries_message_idx').on(t.messageId).where(sql`${t.messagePayload} IS NULL`),
]);

/** Retained messages, one per topic name (a copy of the message, not a reference). */
export const retainedMessages = pgTable('retained_messages', {
  hub: text().notNull(),
  topicName: text().notNull(),
  messageId: bigint({ mode: 'number' }).notNull(),
  payload: bytea().notNull(),
  qos: smallint().notNull(),
  properties: jsonb(),
  expiresAtMs: ms('expires_at_ms'),
  publisherId: text(),
  createdAtMs: ms('created_at_ms').notNull(),
}, (t) => [primaryKey({ columns: [t.hub, t.topicName] })]);

/** Wills waiting for their session's connection to end (or for their delay). */
export const wills = pgTable('wills', {
  hub: text().notNull(),
  clientId: text().notNull(),
  topicName: text().notNull(),
  payload: bytea().notNull(),
  qos: smallint().notNull(),
  retain: boolean().notNull(),
  properties: jsonb(),
  delayIntervalSec: bigint({ mode: 'number' }).notNull(),
  messageExpiryIntervalSec: bigint({ mode: 'number' }),
  createdAtMs: ms('created_at_ms').notNull(),
}, (t) => [primaryKey({ columns: [t.hub, t.clientId] })]);

/** Inbound QoS 2 packet ids awaiting PUBREL [MQTT-4.3.3]. */
export const inboundQos2 = pgTable('inbound_qos2', {
  hub: text().notNull(),
  clientId: text().notNull(),
  packetId: integer().notNull(),
}, (t) => [primaryKey({ columns: [t.hub, t.clientId, t.packetId] })]);

/** Rights granted to a user, connection or group of a hub (Web PubSub roles). */
export const permissions = pgTable('permissions', {
  id: bigserial({ mode: 'number' }).primaryKey(),
  hub: text().notNull(),
  /** 'user' | 'connection' | 'group'. */
  subjectKind: text().notNull(),
  subject: text().notNull(),
  /** e.g. 'sendToGroup', 'joinLeaveGroup'. */
  permission: text().notNull(),
  /** Group / topic the right applies to; null for all. */
  target: text(),
  grantedAt: timestamp({ withTimezone: true }).notNull().default(sql`now()`),
  /** Who granted it (an access key's name or an admin identity). */
  grantedBy: text(),
}, (t) => [
  index('permissions_subject_idx').on(t.hub, t.subjectKind, t.subject),
  uniqueIndex('permissions_grant_uq').on(t.hub, t.subjectKind, t.subject, t.permission, sql`coalesce(${t.target}, '')`),
]);

/** Per-hub settings; a null column follows the deployment default. */
export const hubSettings = pgTable('hub_settings', {
  hub: text().primaryKey(),
  /** 'allow' | 'deny' | null (deployment default). */
  anonymousConnectPolicy: text(),
  maxKeepAliveSec: integer(),
  maxSessions: integer(),
  updatedAt: timestamp({ withTimezone: true }).notNull().default(sql`now()`),
});

/** Append-only audit trail (DESIGN.md §6). */
export const auditEvents = pgTable('audit_events', {
  id: bigserial({ mode: 'number' }).primaryKey(),
  at: timestamp({ withTimezone: true }).notNull().default(sql`now()`),
  hub: text().notNull(),
  /** connect, connect_refused, disconnect, subscribe, unsubscribe, session_expired, takeover, queue_overflow, ... */
  event: text().notNull(),
  clientId: text(),
  /** Who acted: a user id, an admin, or 'broker'. */
  actor: text(),
  remoteAddress: text(),
  reasonCode: integer(),
  detail: jsonb(),
}, (t) => [
  index('audit_events_at_idx').on(t.at),
  index('audit_events_client_idx').on(t.hub, t.clientId, t.at),
  index('audit_events_event_idx').on(t.event, t.at),
  // The admin API's audit query by actor (a key, a user id, 'broker'), newest first; rows without one are left out
  index('audit_events_actor_idx').on(t.actor, t.id).where(sql`${t.actor} IS NOT NULL`),
]);
