// The cold part of a group commit: sessions, subscriptions, wills, retained messages and audit
// rows (rarer than messages), each kind in a multi-row (unnest) statement, in a fixed order.
import type pg from 'pg';
import type { Message } from '../../mqtt/packet.ts';
import type { SubscriptionRecord, WillRecord } from '../store.ts';
import { numbersOf, packBytes, textsOf } from './arrays.ts';
import { isDeleted, type AccessChange, type Batch } from './batch.ts';
import { auditDetailJson, propsToJson } from './json-columns.ts';

/** Everything of `b` but messages, deliveries and inbound QoS 2 ids, on `c` inside a transaction the caller opened. */
export async function writeCold(c: pg.ClientBase, b: Batch, maxAuditDetailBytes: number): Promise<void> {
  if (b.deletedSessions.size > 0) {
    const hubs: string[] = [];
    const ids: string[] = [];
    for (const s of b.deletedSessions.values()) { hubs.push(s.hub); ids.push(s.clientId); }
    for (const table of ['sessions', 'subscriptions', 'wills', 'inbound_qos2', 'deliveries']) {
      await c.query(`DELETE FROM ${table} t USING unnest($1::text[], $2::text[]) AS d(hub, client_id)
        WHERE t.hub = d.hub AND t.client_id = d.client_id`, [hubs, ids]);
    }
  }
  if (b.sessions.size > 0) {
    const rows = [...b.sessions.values()];
    await c.query(`INSERT INTO sessions (hub, client_id, protocol_version, expiry_interval_sec, connected_at_ms, disconnected_at_ms, node_id, user_id)
      SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::text[])
      ON CONFLICT (hub, client_id) DO UPDATE SET protocol_version = excluded.protocol_version,
        expiry_interval_sec = excluded.expiry_interval_sec, connected_at_ms = excluded.connected_at_ms,
        disconnected_at_ms = excluded.disconnected_at_ms, node_id = excluded.node_id, user_id = excluded.user_id`, [
      rows.map((r) => r.hub), rows.map((r) => r.clientId), rows.map((r) => r.protocolVersion),
      rows.map((r) => r.expiryIntervalSec), rows.map((r) => r.connectedAtMs), rows.map((r) => r.disconnectedAtMs),
      rows.map((r) => r.nodeId), rows.map((r) => r.userId ?? null),
    ]);
  }
  if (b.subscriptions.size > 0) {
    const all = [...b.subscriptions.values()];
    const del = all.filter(isDeleted) as Array<{ hub: string; clientId: string; topicFilter: string }>;
    const put = all.filter((x) => !isDeleted(x)) as SubscriptionRecord[];
    if (del.length) {
      await c.query(`DELETE FROM subscriptions t USING unnest($1::text[], $2::text[], $3::text[]) AS d(hub, client_id, f)
        WHERE t.hub = d.hub AND t.client_id = d.client_id AND t.topic_filter = d.f`,
      [del.map((r) => r.hub), del.map((r) => r.clientId), del.map((r) => r.topicFilter)]);
    }
    if (put.length) {
      await c.query(`INSERT INTO subscriptions (hub, client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bool[], $6::bool[], $7::smallint[], $8::int[])
        ON CONFLICT (hub, client_id, topic_filter) DO UPDATE SET qos = excluded.qos, no_local = excluded.no_local,
          retain_as_published = excluded.retain_as_published, retain_handling = excluded.retain_handling,
          subscription_id = excluded.subscription_id`, [
        put.map((r) => r.hub), put.map((r) => r.clientId), put.map((r) => r.topicFilter), put.map((r) => r.qos),
        put.map((r) => r.noLocal), put.map((r) => r.retainAsPublished), put.map((r) => r.retainHandling),
        put.map((r) => r.subscriptionId ?? null),
      ]);
    }
  }
  if (b.wills.size > 0) {
    const all = [...b.wills.values()];
    const del = all.filter(isDeleted) as Array<{ hub: string; clientId: string }>;
    const put = all.filter((x) => !isDeleted(x)) as WillRecord[];
    if (del.length) {
      await c.query(`DELETE FROM wills t USING unnest($1::text[], $2::text[]) AS d(hub, client_id)
        WHERE t.hub = d.hub AND t.client_id = d.client_id`, [del.map((r) => r.hub), del.map((r) => r.clientId)]);
    }
    if (put.length) {
      // Payloads packed into one bytea sent as binary (a bytea[] would be spelled out in hex)
      const payloads = packBytes(put.map((w) => w.message.payload));
      await c.query(`INSERT INTO wills (hub, client_id, topic_name, payload, qos, retain, properties, delay_interval_sec, message_expiry_interval_sec, created_at_ms)
        SELECT u.hub, u.client_id, u.topic, substring($4::bytea FROM (u.off - u.len + 1)::int FOR u.len), u.qos, u.retain, u.props,
          u.delay, u.expiry, u.created
        FROM (
          SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
          FROM unnest($1::text[], $2::text[], $3::text[], $5::int[], $6::smallint[], $7::bool[], $8::jsonb[], $9::bigint[], $10::bigint[], $11::bigint[])
            WITH ORDINALITY AS t(hub, client_id, topic, len, qos, retain, props, delay, expiry, created, ord)
        ) u
        ON CONFLICT (hub, client_id) DO UPDATE SET topic_name = excluded.topic_name, payload = excluded.payload,
          qos = excluded.qos, retain = excluded.retain, properties = excluded.properties,
          delay_interval_sec = excluded.delay_interval_sec, message_expiry_interval_sec = excluded.message_expiry_interval_sec,
          created_at_ms = excluded.created_at_ms`, [
        put.map((w) => w.hub), put.map((w) => w.clientId), put.map((w) => w.message.topicName), payloads.bytes, payloads.lengths,
        put.map((w) => w.message.qos), put.map((w) => w.message.retain), put.map((w) => propsToJson(w.message.properties)),
        put.map((w) => w.delayIntervalSec), put.map((w) => w.messageExpiryIntervalSec ?? null), put.map((w) => w.message.createdAtMs),
      ]);
    }
  }
  if (b.retained.size > 0) await c.query(retainedStatement(b));
  for (const a of b.access) await writeAccess(c, a);
  if (b.audit.length > 0) {
    const a = b.audit;
    await c.query(`INSERT INTO audit_events (at, hub, event, client_id, actor, remote_address, reason_code, detail)
      SELECT to_timestamp(d.ms / 1000.0), d.hub, d.event, d.client_id, d.actor, d.remote_address, d.reason_code, d.detail
      FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::jsonb[])
        AS d(ms, hub, event, client_id, actor, remote_address, reason_code, detail)`, [
      a.map((e) => e.atMs), a.map((e) => e.hub), a.map((e) => e.event), a.map((e) => e.clientId ?? null),
      a.map((e) => e.actor ?? null), a.map((e) => e.remoteAddress ?? null), a.map((e) => e.reasonCode ?? null),
      a.map((e) => auditDetailJson(e.detail, maxAuditDetailBytes)),
    ]);
  }
}

/** One grant, revocation or hub-settings change (administration: rare, so one statement each, in call order). */
async function writeAccess(c: pg.ClientBase, a: AccessChange): Promise<void> {
  switch (a.kind) {
    case 'grant': {
      const r = a.record;
      await c.query(`INSERT INTO permissions (hub, subject_kind, subject, permission, target, granted_by, granted_at)
        VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7 / 1000.0))
        ON CONFLICT (hub, subject_kind, subject, permission, (coalesce(target, ''))) DO NOTHING`,
      [r.hub, r.subjectKind, r.subject, r.permission, r.target, r.grantedBy ?? null, r.grantedAtMs]);
      return;
    }
    case 'revoke':
      await c.query(`DELETE FROM permissions WHERE hub = $1 AND subject_kind = $2 AND subject = $3 AND permission = $4
        AND coalesce(target, '') = coalesce($5, '')`, [a.hub, a.subjectKind, a.subject, a.permission, a.target]);
      return;
    case 'revokeAll':
      await c.query('DELETE FROM permissions WHERE hub = $1 AND subject_kind = $2 AND subject = $3', [a.hub, a.subjectKind, a.subject]);
      return;
    case 'hubSettings': {
      const r = a.record;
      await c.query(`INSERT INTO hub_settings (hub, anonymous_connect_policy, max_keep_alive_sec, max_sessions, updated_at)
        VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0))
        ON CONFLICT (hub) DO UPDATE SET anonymous_connect_policy = excluded.anonymous_connect_policy,
          max_keep_alive_sec = excluded.max_keep_alive_sec, max_sessions = excluded.max_sessions, updated_at = excluded.updated_at`,
      [r.hub, r.anonymousConnectPolicy, r.maxKeepAliveSec, r.maxSessions, r.updatedAtMs]);
    }
  }
}

/**
 * The retained changes of `b` as one statement (deletes and upserts as two data-modifying CTEs:
 * their keys are disjoint, a batch keeps one change per topic), prepared once per connection. On
 * its own, outside a transaction, it is a whole commit in one round trip.
 */
export function retainedStatement(b: Batch): pg.QueryConfig {
  const del: Array<{ hub: string; topicName: string }> = [];
  const put: Message[] = [];
  for (const x of b.retained.values()) {
    if (isDeleted(x)) del.push(x);
    else put.push(x as Message);
  }
  const payloads = packBytes(put.map((m) => m.payload));
  return {
    name: 'tern_retained',
    text: RETAINED_SQL,
    values: [
      textsOf(del, (r) => r.hub), textsOf(del, (r) => r.topicName),
      textsOf(put, (m) => m.hub), textsOf(put, (m) => m.topicName), numbersOf(put, (m) => m.id), payloads.bytes, payloads.lengths,
      numbersOf(put, (m) => m.qos), textsOf(put, (m) => propsToJson(m.properties)), numbersOf(put, (m) => m.expiresAtMs ?? null),
      textsOf(put, (m) => m.publisherId ?? null), numbersOf(put, (m) => m.createdAtMs),
    ],
  };
}

const RETAINED_SQL = `WITH gone AS (
    DELETE FROM retained_messages t USING unnest($1::text[], $2::text[]) AS d(hub, topic_name)
    WHERE t.hub = d.hub AND t.topic_name = d.topic_name
  ), stored AS (
    INSERT INTO retained_messages (hub, topic_name, message_id, payload, qos, properties, expires_at_ms, publisher_id, created_at_ms)
    SELECT u.hub, u.topic, u.id, substring($6::bytea FROM (u.off - u.len + 1)::int FOR u.len), u.qos, u.props, u.expires,
      u.publisher, u.created
    FROM (
      SELECT t.*, sum(t.len) OVER (ORDER BY t.ord) AS off
      FROM unnest($3::text[], $4::text[], $5::bigint[], $7::int[], $8::smallint[], $9::jsonb[], $10::bigint[], $11::text[], $12::bigint[])
        WITH ORDINALITY AS t(hub, topic, id, len, qos, props, expires, publisher, created, ord)
    ) u
    ON CONFLICT (hub, topic_name) DO UPDATE SET message_id = excluded.message_id, payload = excluded.payload,
      qos = excluded.qos, properties = excluded.properties, expires_at_ms = excluded.expires_at_ms,
      publisher_id = excluded.publisher_id, created_at_ms = excluded.created_at_ms
  )
  SELECT 1`;
