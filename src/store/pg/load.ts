// Start-up read of the durable state (Store.load), typed from the drizzle schema: each row comes
// back as its table's `$inferSelect`, and only values with a narrower domain than their column
// (QoS, protocol version, delivery state) are checked on the way into the records.
import { and, eq, exists, isNull, sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { Message, ProtocolVersion, QoS } from '../../mqtt/packet.ts';
import {
  StoreError, type DeliveryRecord, type DeliveryState, type HubSettingsRecord, type PermissionRecord, type PermissionSubjectKind,
  type SessionRecord, type StoredAccess, type StoredState, type SubscriptionRecord, type WillRecord,
} from '../store.ts';
import { propsFromJson } from './json-columns.ts';
import { deliveries, hubSettings, inboundQos2, messages, permissions, retainedMessages, sessions, subscriptions, wills } from './schema.ts';

/** `value` if it is one of `allowed`; a row outside its domain is a corrupt store, not something to guess about. */
function oneOf<T extends number | string>(allowed: readonly T[], value: number | string, column: string): T {
  if ((allowed as ReadonlyArray<number | string>).includes(value)) return value as T;
  throw new StoreError(`stored ${column} is ${JSON.stringify(value)}, not one of ${allowed.join(', ')}`);
}

const QOS: readonly QoS[] = [0, 1, 2];
const PROTOCOL_VERSIONS: readonly ProtocolVersion[] = [4, 5];
const DELIVERY_STATES: readonly DeliveryState[] = ['queued', 'sent', 'pubrec'];
const RETAIN_HANDLING: ReadonlyArray<0 | 1 | 2> = [0, 1, 2];

function toMessage(r: typeof messages.$inferSelect, column: string): Message {
  return {
    id: r.id, hub: r.hub, topicName: r.topicName, payload: r.payload, qos: oneOf(QOS, r.qos, `${column}.qos`), retain: r.retain,
    properties: propsFromJson(r.properties), expiresAtMs: r.expiresAtMs ?? undefined, publisherId: r.publisherId ?? undefined,
    createdAtMs: r.createdAtMs,
  };
}

function toSession(r: typeof sessions.$inferSelect): SessionRecord {
  return {
    hub: r.hub, clientId: r.clientId, protocolVersion: oneOf(PROTOCOL_VERSIONS, r.protocolVersion, 'sessions.protocol_version'),
    expiryIntervalSec: r.expiryIntervalSec, connectedAtMs: r.connectedAtMs, disconnectedAtMs: r.disconnectedAtMs, nodeId: r.nodeId,
    userId: r.userId,
  };
}

function toSubscription(r: typeof subscriptions.$inferSelect): SubscriptionRecord {
  return {
    hub: r.hub, clientId: r.clientId, topicFilter: r.topicFilter, qos: oneOf(QOS, r.qos, 'subscriptions.qos'), noLocal: r.noLocal,
    retainAsPublished: r.retainAsPublished, retainHandling: oneOf(RETAIN_HANDLING, r.retainHandling, 'subscriptions.retain_handling'),
    subscriptionId: r.subscriptionId ?? undefined,
  };
}

function toDelivery(r: typeof deliveries.$inferSelect): DeliveryRecord {
  return {
    id: r.id, hub: r.hub, clientId: r.clientId, messageId: r.messageId, qos: oneOf(QOS, r.qos, 'deliveries.qos'), retain: r.retain,
    subscriptionIds: r.subscriptionIds, shareKey: r.shareKey ?? undefined, packetId: r.packetId,
    state: oneOf(DELIVERY_STATES, r.state, 'deliveries.state'),
  };
}

/** The message a delivery row carries inline (migrations/0006), or undefined when it is in `messages`. */
function inlineMessage(r: typeof deliveries.$inferSelect): Message | undefined {
  if (r.messagePayload === null) return undefined;
  if (r.messageTopicName === null || r.messageQos === null || r.messageRetain === null || r.messageCreatedAtMs === null) {
    throw new StoreError(`stored delivery ${r.id} carries a payload without its message's topic, QoS, retain flag or creation time`);
  }
  return toMessage({
    id: r.messageId, hub: r.hub, topicName: r.messageTopicName, payload: r.messagePayload, qos: r.messageQos, retain: r.messageRetain,
    properties: r.messageProperties, expiresAtMs: r.messageExpiresAtMs, publisherId: r.messagePublisherId, createdAtMs: r.messageCreatedAtMs,
  }, 'deliveries.message');
}

/** A retained copy as a message: it keeps the id of the message it copies. */
function toRetained(r: typeof retainedMessages.$inferSelect): Message {
  return toMessage({ ...r, id: r.messageId, retain: true }, 'retained_messages');
}

/** A will keeps no id, expiry time or publisher of its own: they are set when it is published. */
function toWill(r: typeof wills.$inferSelect): WillRecord {
  return {
    hub: r.hub, clientId: r.clientId, delayIntervalSec: r.delayIntervalSec, messageExpiryIntervalSec: r.messageExpiryIntervalSec ?? undefined,
    message: toMessage({ ...r, id: 0, expiresAtMs: null, publisherId: r.clientId }, 'wills'),
  };
}

/**
 * Everything stored, for start-up: deliveries in id order, and only the messages they reference,
 * whether in a `messages` row or inside the row of the delivery (each message once).
 */
export async function loadState(db: NodePgDatabase): Promise<StoredState> {
  const [sessionRows, subscriptionRows, deliveryRows, retainedRows, willRows, qos2Rows] = await Promise.all([
    db.select().from(sessions),
    db.select().from(subscriptions),
    db.select().from(deliveries).orderBy(deliveries.id),
    db.select().from(retainedMessages),
    db.select().from(wills),
    db.select().from(inboundQos2),
  ]);
  // (a delivery carrying its message needs no messages row: deliveries_message_idx leaves it out)
  const messageRows = await db.select().from(messages)
    .where(exists(db.select({ one: sql`1` }).from(deliveries).where(and(eq(deliveries.messageId, messages.id), isNull(deliveries.messagePayload)))));
  const byId = new Map<number, Message>();
  for (const r of messageRows) byId.set(r.id, toMessage(r, 'messages'));
  for (const r of deliveryRows) {
    if (byId.has(r.messageId)) continue;
    const m = inlineMessage(r);
    if (m) byId.set(m.id, m);
  }
  return {
    sessions: sessionRows.map(toSession),
    subscriptions: subscriptionRows.map(toSubscription),
    messages: [...byId.values()],
    deliveries: deliveryRows.map(toDelivery),
    retained: retainedRows.map(toRetained),
    wills: willRows.map(toWill),
    inboundQos2: qos2Rows.map((r) => ({ hub: r.hub, clientId: r.clientId, packetId: r.packetId })),
  };
}

const SUBJECT_KINDS: readonly PermissionSubjectKind[] = ['connection', 'user'];
const POLICIES: ReadonlyArray<'allow' | 'deny'> = ['allow', 'deny'];

function toPermission(r: typeof permissions.$inferSelect): PermissionRecord {
  return {
    hub: r.hub, subjectKind: oneOf(SUBJECT_KINDS, r.subjectKind, 'permissions.subject_kind'), subject: r.subject, permission: r.permission,
    target: r.target, grantedBy: r.grantedBy ?? undefined, grantedAtMs: r.grantedAt.getTime(),
  };
}

function toHubSettings(r: typeof hubSettings.$inferSelect): HubSettingsRecord {
  return {
    hub: r.hub,
    anonymousConnectPolicy: r.anonymousConnectPolicy === null ? null : oneOf(POLICIES, r.anonymousConnectPolicy, 'hub_settings.anonymous_connect_policy'),
    maxKeepAliveSec: r.maxKeepAliveSec, maxSessions: r.maxSessions, updatedAtMs: r.updatedAt.getTime(),
  };
}

/** Grants and hub settings, for the access-control cache. */
export async function loadAccess(db: NodePgDatabase): Promise<StoredAccess> {
  const [permissionRows, settingRows] = await Promise.all([db.select().from(permissions), db.select().from(hubSettings)]);
  return { permissions: permissionRows.map(toPermission), hubSettings: settingRows.map(toHubSettings) };
}
