// The hot statement: messages, deliveries and inbound QoS 2 ids of a group commit in one call of
// tern_apply_hot (migrations/0006), its parameters generated from one table and passed by name, so
// that a table that does not match the function fails loudly instead of filling the wrong column.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Message } from '../../mqtt/packet.ts';
import type { DeliveryRecord, DeliveryState, InboundQos2Record } from '../store.ts';
import { boolsOf, numberArray, numbersOf, packBytes, textsOf } from './arrays.ts';
import type { Batch } from './batch.ts';
import { propsToJson } from './json-columns.ts';

/** What one call writes, sorted by kind (each list may be empty). */
export interface HotRows {
  messages: Message[];
  /** The messages' payloads packed into one buffer, and their lengths. */
  payloads: { bytes: Buffer; lengths: string };
  deleted: number[];
  /** Deliveries whose message is in `messages` (it has other deliveries in this commit). */
  inserted: DeliveryRecord[];
  /** Deliveries carrying their message in their own row: the only delivery of it in this commit. */
  inline: Array<{ d: DeliveryRecord; m: Message }>;
  /** The inline messages' payloads packed into one buffer, and their lengths. */
  inlinePayloads: { bytes: Buffer; lengths: string };
  updated: Array<{ id: number; packetId: number; state: DeliveryState }>;
  qos2Deleted: InboundQos2Record[];
  qos2Added: InboundQos2Record[];
}

/** One parameter of tern_apply_hot: its name and type as the function declares them, and its value. */
export interface HotParam {
  name: string;
  type: string;
  value: (rows: HotRows) => string | Buffer | null;
}

/** tern_apply_hot's parameters, in the function's order (test/unit/store checks this against the migration). */
export const HOT_PARAMS: readonly HotParam[] = [
  { name: 'm_id', type: 'bigint[]', value: (r) => numbersOf(r.messages, (m) => m.id) },
  { name: 'm_hub', type: 'text[]', value: (r) => textsOf(r.messages, (m) => m.hub) },
  { name: 'm_topic', type: 'text[]', value: (r) => textsOf(r.messages, (m) => m.topicName) },
  // Payloads packed into one bytea sent as binary (a bytea[] would be spelled out in hex)
  { name: 'm_payload', type: 'bytea', value: (r) => r.payloads.bytes },
  { name: 'm_plen', type: 'int[]', value: (r) => r.payloads.lengths },
  { name: 'm_qos', type: 'smallint[]', value: (r) => numbersOf(r.messages, (m) => m.qos) },
  { name: 'm_retain', type: 'boolean[]', value: (r) => boolsOf(r.messages, (m) => m.retain) },
  { name: 'm_props', type: 'jsonb[]', value: (r) => textsOf(r.messages, (m) => propsToJson(m.properties)) },
  { name: 'm_expires', type: 'bigint[]', value: (r) => numbersOf(r.messages, (m) => m.expiresAtMs) },
  { name: 'm_publisher', type: 'text[]', value: (r) => textsOf(r.messages, (m) => m.publisherId) },
  { name: 'm_created', type: 'bigint[]', value: (r) => numbersOf(r.messages, (m) => m.createdAtMs) },
  { name: 'd_delete', type: 'bigint[]', value: (r) => numberArray(r.deleted) },
  { name: 'd_id', type: 'bigint[]', value: (r) => numbersOf(r.inserted, (d) => d.id) },
  { name: 'd_hub', type: 'text[]', value: (r) => textsOf(r.inserted, (d) => d.hub) },
  { name: 'd_client', type: 'text[]', value: (r) => textsOf(r.inserted, (d) => d.clientId) },
  { name: 'd_message', type: 'bigint[]', value: (r) => numbersOf(r.inserted, (d) => d.messageId) },
  { name: 'd_qos', type: 'smallint[]', value: (r) => numbersOf(r.inserted, (d) => d.qos) },
  { name: 'd_retain', type: 'boolean[]', value: (r) => boolsOf(r.inserted, (d) => d.retain) },
  // Each element an int[] literal; the function casts it
  { name: 'd_sids', type: 'text[]', value: (r) => textsOf(r.inserted, (d) => `{${d.subscriptionIds.join(',')}}`) },
  { name: 'd_share', type: 'text[]', value: (r) => textsOf(r.inserted, (d) => d.shareKey) },
  { name: 'd_packet', type: 'int[]', value: (r) => numbersOf(r.inserted, (d) => d.packetId) },
  { name: 'd_state', type: 'text[]', value: (r) => textsOf(r.inserted, (d) => d.state) },
  { name: 'i_id', type: 'bigint[]', value: (r) => numbersOf(r.inline, (x) => x.d.id) },
  { name: 'i_hub', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.d.hub) },
  { name: 'i_client', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.d.clientId) },
  { name: 'i_message', type: 'bigint[]', value: (r) => numbersOf(r.inline, (x) => x.d.messageId) },
  { name: 'i_qos', type: 'smallint[]', value: (r) => numbersOf(r.inline, (x) => x.d.qos) },
  { name: 'i_retain', type: 'boolean[]', value: (r) => boolsOf(r.inline, (x) => x.d.retain) },
  { name: 'i_sids', type: 'text[]', value: (r) => textsOf(r.inline, (x) => `{${x.d.subscriptionIds.join(',')}}`) },
  { name: 'i_share', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.d.shareKey) },
  { name: 'i_packet', type: 'int[]', value: (r) => numbersOf(r.inline, (x) => x.d.packetId) },
  { name: 'i_state', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.d.state) },
  { name: 'i_topic', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.m.topicName) },
  { name: 'i_payload', type: 'bytea', value: (r) => r.inlinePayloads.bytes },
  { name: 'i_plen', type: 'int[]', value: (r) => r.inlinePayloads.lengths },
  { name: 'i_mqos', type: 'smallint[]', value: (r) => numbersOf(r.inline, (x) => x.m.qos) },
  { name: 'i_mretain', type: 'boolean[]', value: (r) => boolsOf(r.inline, (x) => x.m.retain) },
  { name: 'i_props', type: 'jsonb[]', value: (r) => textsOf(r.inline, (x) => propsToJson(x.m.properties)) },
  { name: 'i_expires', type: 'bigint[]', value: (r) => numbersOf(r.inline, (x) => x.m.expiresAtMs) },
  { name: 'i_publisher', type: 'text[]', value: (r) => textsOf(r.inline, (x) => x.m.publisherId) },
  { name: 'i_created', type: 'bigint[]', value: (r) => numbersOf(r.inline, (x) => x.m.createdAtMs) },
  { name: 'u_id', type: 'bigint[]', value: (r) => numbersOf(r.updated, (u) => u.id) },
  { name: 'u_packet', type: 'int[]', value: (r) => numbersOf(r.updated, (u) => u.packetId) },
  { name: 'u_state', type: 'text[]', value: (r) => textsOf(r.updated, (u) => u.state) },
  { name: 'q_del_hub', type: 'text[]', value: (r) => textsOf(r.qos2Deleted, (q) => q.hub) },
  { name: 'q_del_client', type: 'text[]', value: (r) => textsOf(r.qos2Deleted, (q) => q.clientId) },
  { name: 'q_del_packet', type: 'int[]', value: (r) => numbersOf(r.qos2Deleted, (q) => q.packetId) },
  { name: 'q_add_hub', type: 'text[]', value: (r) => textsOf(r.qos2Added, (q) => q.hub) },
  { name: 'q_add_client', type: 'text[]', value: (r) => textsOf(r.qos2Added, (q) => q.clientId) },
  { name: 'q_add_packet', type: 'int[]', value: (r) => numbersOf(r.qos2Added, (q) => q.packetId) },
  // Commit-order locks for commits written at once (migrations/0006): one commit is written at a
  // time, so none is taken (the function skips them when null)
  { name: 'o_space', type: 'int', value: () => null },
  { name: 'o_lock', type: 'int', value: () => null },
  { name: 'o_after', type: 'int', value: () => null },
];

/** A parameterised call of tern_apply_hot built from a parameter table. */
export interface HotStatement {
  /** Name of the prepared statement (one per text): parsed and planned once per connection, not per commit. */
  name: string;
  text: string;
  values(rows: HotRows): Array<string | Buffer | null>;
}

/**
 * `SELECT tern_apply_hot(m_id => $1::bigint[], ...)`: every value bound to its parameter by name,
 * so PostgreSQL finds no function to call when a name or a type does not match its declaration.
 */
export function hotStatement(params: readonly HotParam[]): HotStatement {
  const names = new Set(params.map((p) => p.name));
  if (names.size !== params.length) throw new Error('tern_apply_hot: a parameter is listed twice');
  const args = params.map((p, i) => `${p.name} => $${i + 1}::${p.type}`).join(', ');
  const text = `SELECT tern_apply_hot(${args})`;
  return {
    // (named after its text: a connection refuses one name for two texts)
    name: `tern_apply_hot_${createHash('sha256').update(text).digest('hex').slice(0, 16)}`,
    text,
    values: (rows) => params.map((p) => p.value(rows)),
  };
}

const HOT = hotStatement(HOT_PARAMS);

/** Rows written by the hot statement, for the close log (`messages` counts inline messages too). */
export interface HotRowCounts {
  messages: number;
  inserted: number;
  updated: number;
  deleted: number;
}

/** What `b` gives the hot statement to write, or undefined when it has nothing to write. */
export function hotRowsOf(b: Batch): HotRows | undefined {
  if (b.deliveries.size === 0 && b.inboundQos2.size === 0) return undefined; // messages are written only with a delivery
  const deleted: number[] = [];
  const inserts: DeliveryRecord[] = [];
  const updated: Array<{ id: number; packetId: number; state: DeliveryState }> = [];
  for (const [id, ch] of b.deliveries) {
    if (ch.delete) deleted.push(id);
    else if (ch.insert) inserts.push(ch.insert);
    else if (ch.update) updated.push({ id, ...ch.update });
  }
  // A message row only serves the deliveries inserted with it (every insert of a delivery comes
  // with its message): when all of them were acknowledged before this commit, skip the row. When
  // exactly one is left, the message goes inside that delivery's row; a later unit that adds a
  // delivery of the same message inserts its messages row then, with that delivery.
  const messages: Message[] = [];
  const inserted: DeliveryRecord[] = [];
  const inline: Array<{ d: DeliveryRecord; m: Message }> = [];
  if (inserts.length > 0) {
    const refs = new Map<number, number>();
    for (const d of inserts) refs.set(d.messageId, (refs.get(d.messageId) ?? 0) + 1);
    for (const d of inserts) {
      const m = b.messages.get(d.messageId);
      if (m !== undefined && refs.get(d.messageId) === 1) inline.push({ d, m });
      else inserted.push(d);
    }
    for (const [id, n] of refs) {
      const m = b.messages.get(id);
      if (n > 1 && m !== undefined) messages.push(m);
    }
  }
  if (messages.length === 0 && deleted.length === 0 && inserts.length === 0 && updated.length === 0 && b.inboundQos2.size === 0) return undefined;
  const q = [...b.inboundQos2.values()];
  return {
    messages, payloads: packBytes(messages.map((m) => m.payload)), deleted, inserted, updated,
    inline, inlinePayloads: packBytes(inline.map((x) => x.m.payload)),
    qos2Deleted: q.filter((r) => !r.add), qos2Added: q.filter((r) => r.add),
  };
}

/** Messages, deliveries and inbound QoS 2 ids of `b` in one statement on `c` (nothing when there are none). */
export async function writeHot(
  c: pg.ClientBase, b: Batch, counts: HotRowCounts, statement: HotStatement = HOT,
): Promise<void> {
  const rows = hotRowsOf(b);
  if (!rows) return;
  counts.messages += rows.messages.length + rows.inline.length;
  counts.inserted += rows.inserted.length + rows.inline.length;
  counts.updated += rows.updated.length;
  counts.deleted += rows.deleted.length;
  await c.query({ name: statement.name, text: statement.text, values: statement.values(rows) });
}
