// audit_events written by real broker activity (README "Auditing with SQL"): every event kind and
// its detail fields, read back with SQL from the broker's own PostgreSQL database.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, uniqueId } from '../helpers/clients.ts';
import { serverDisconnect } from '../helpers/inbox.ts';
import { connectBytes } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const MAX_QUEUED = 2;

let broker: BrokerProcess & { databaseUrl: string | undefined };
let db: pg.Client;
before(async () => {
  broker = await startBroker(['--max-queued-messages', String(MAX_QUEUED)]);
  db = new pg.Client({ connectionString: broker.databaseUrl });
  await db.connect();
});
after(async () => {
  await db?.end();
  await broker?.stop();
});

interface Row {
  hub: string;
  event: string;
  client_id: string | null;
  actor: string | null;
  remote_address: string | null;
  reason_code: number | null;
  detail: unknown;
}

/**
 * The audit rows of `clientId` (optionally of one event), oldest first, once there are at least `n`.
 * Audit rows go through the group-commit writer after the event: the wait is a bounded poll of the table.
 */
async function auditOf(clientId: string, n: number, event?: string, timeoutMs = 5000): Promise<Row[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = (await db.query(
      `SELECT hub, event, client_id, actor, remote_address, reason_code, detail FROM audit_events
       WHERE client_id = $1 AND ($2::text IS NULL OR event = $2) ORDER BY id`, [clientId, event ?? null],
    )).rows as Row[];
    if (rows.length >= n) return rows;
    if (Date.now() > deadline) throw new Error(`expected ${n} audit rows for ${clientId}${event ? ` (${event})` : ''}, got ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const LOOPBACK = /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1|0000:0000:0000:0000:0000:0000:0000:0001)$/;

describe('audit events', () => {
  test('connect and disconnect (client DISCONNECT, then a dropped network connection with a will)', async () => {
    const clientId = uniqueId('audit-conn');
    const c = await connect(broker, 'tcp', 5, { clientId, clean: false, properties: { sessionExpiryInterval: 60 }, username: 'alice' });
    await c.endAsync();
    const rows = await auditOf(clientId, 2);
    assert.equal(rows.length, 2);
    const [conn, disc] = rows;
    assert.match(conn!.remote_address ?? '', LOOPBACK);
    assert.deepEqual({ ...conn!, remote_address: undefined }, {
      hub: 'default', event: 'connect', client_id: clientId, actor: null, remote_address: undefined, reason_code: null,
      detail: { method: 'anonymous', transport: 'tcp', protocolVersion: 5, cleanStart: false, sessionPresent: false, username: 'alice' },
    });
    assert.match(disc!.remote_address ?? '', LOOPBACK);
    assert.deepEqual({ ...disc!, remote_address: undefined }, {
      hub: 'default', event: 'disconnect', client_id: clientId, actor: 'client', remote_address: undefined, reason_code: 0,
      detail: { initiatedBy: 'client', willPublished: false },
    });

    // Over WebSocket, 3.1.1, resuming the session, then the network connection drops: the will is published
    const again = await connect(broker, 'ws', 4, { clientId, clean: false, will: { topic: `audit/${clientId}`, payload: Buffer.from('w'), qos: 0, retain: false } });
    (again.stream as unknown as { destroy(): void }).destroy();
    const more = (await auditOf(clientId, 4)).slice(2);
    assert.deepEqual(more.map((r) => ({ ...r, remote_address: undefined })), [
      {
        hub: 'default', event: 'connect', client_id: clientId, actor: null, remote_address: undefined, reason_code: null,
        detail: { method: 'anonymous', transport: 'ws', protocolVersion: 4, cleanStart: false, sessionPresent: true },
      },
      {
        hub: 'default', event: 'disconnect', client_id: clientId, actor: 'network', remote_address: undefined, reason_code: null,
        detail: { initiatedBy: 'network', willPublished: true },
      },
    ]);
    await close(again);
  });

  test('connect_refused: a 3.1.1 CONNECT with an empty client id and clean session 0 (CONNACK 2)', async () => {
    const raw = await RawPeer.open(broker, 'tcp', 4);
    // The row has no client id: find it by its detail, after a marker connect on the same writer
    const before = (await db.query(`SELECT coalesce(max(id), 0)::bigint AS id FROM audit_events`)).rows[0].id as string;
    raw.send(connectBytes({ level: 4, flags: 0x00, clientId: '' }));
    const connack = await raw.next();
    assert.equal(connack.cmd, 'connack');
    assert.equal((connack as { returnCode?: number }).returnCode, 2);
    await raw.closed();
    const deadline = Date.now() + 5000;
    let rows: Row[] = [];
    while (rows.length === 0) {
      rows = (await db.query(`SELECT hub, event, client_id, actor, remote_address, reason_code, detail FROM audit_events WHERE id > $1 AND event = 'connect_refused' ORDER BY id`, [before])).rows as Row[];
      if (rows.length === 0 && Date.now() > deadline) throw new Error('no connect_refused row');
      if (rows.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.match(row.remote_address ?? '', LOOPBACK);
    assert.deepEqual({ ...row, remote_address: undefined, detail: { ...(row.detail as object), reason: undefined } }, {
      hub: 'default', event: 'connect_refused', client_id: null, actor: null, remote_address: undefined, reason_code: 0x85,
      detail: { transport: 'tcp', protocolVersion: 4, reason: undefined },
    });
  });

  test('subscribe and unsubscribe: filters, granted codes, removed', async () => {
    const clientId = uniqueId('audit-sub');
    const c = await connect(broker, 'tcp', 5, { clientId });
    try {
      await c.subscribeAsync({ 'a/+': { qos: 1 }, 'b/#': { qos: 2 } });
      await c.unsubscribeAsync(['a/+', 'never/subscribed']);
      await auditOf(clientId, 1, 'unsubscribe');
      const all = await auditOf(clientId, 3);
      assert.deepEqual(all.filter((r) => r.event !== 'connect').map((r) => ({ ...r, remote_address: undefined })), [
        {
          hub: 'default', event: 'subscribe', client_id: clientId, actor: null, remote_address: undefined, reason_code: null,
          detail: { filters: [{ topicFilter: 'a/+', qos: 1, reasonCode: 1 }, { topicFilter: 'b/#', qos: 2, reasonCode: 2 }] },
        },
        {
          hub: 'default', event: 'unsubscribe', client_id: clientId, actor: null, remote_address: undefined, reason_code: null,
          detail: { topicFilters: ['a/+', 'never/subscribed'], removed: ['a/+'] },
        },
      ]);
    } finally {
      await close(c);
    }
  });

  test('takeover: a second connection with the same client id', async () => {
    const clientId = uniqueId('audit-takeover');
    const first = await connect(broker, 'tcp', 5, { clientId });
    const dropped = serverDisconnect(first);
    const second = await connect(broker, 'ws', 5, { clientId });
    try {
      assert.equal(await dropped, 0x8e, 'the first connection gets DISCONNECT Session taken over');
      const rows = (await auditOf(clientId, 1, 'takeover'));
      assert.equal(rows.length, 1);
      const row = rows[0]!;
      assert.match(row.remote_address ?? '', LOOPBACK);
      assert.match(String((row.detail as { previousAddress?: string }).previousAddress), LOOPBACK);
      assert.deepEqual({ ...row, remote_address: undefined, detail: Object.keys(row.detail as object) }, {
        hub: 'default', event: 'takeover', client_id: clientId, actor: 'broker', remote_address: undefined, reason_code: null, detail: ['previousAddress'],
      });
      // The taken-over connection's disconnect is audited as initiated by the broker, with 0x8E
      const disc = await auditOf(clientId, 1, 'disconnect');
      assert.deepEqual(disc.map((r) => [r.actor, r.reason_code, r.detail]), [['server', 0x8e, { initiatedBy: 'server', willPublished: false }]]);
    } finally {
      await close(first, second);
    }
  });

  test('session_expired: a 5.0 session with a 1 s expiry interval', async () => {
    const clientId = uniqueId('audit-expiry');
    const c = await connect(broker, 'tcp', 5, { clientId, clean: true, properties: { sessionExpiryInterval: 1 } });
    await c.endAsync();
    const rows = await auditOf(clientId, 1, 'session_expired', 10_000);
    assert.deepEqual(rows, [{ hub: 'default', event: 'session_expired', client_id: clientId, actor: 'broker', remote_address: null, reason_code: null, detail: null }]);
  });

  test('queue_overflow: the first drop and every 1000th, with the queue state', async () => {
    const clientId = uniqueId('audit-overflow');
    const topic = `audit/${clientId}`;
    const sub = await connect(broker, 'tcp', 5, { clientId, clean: false, properties: { sessionExpiryInterval: 600 } });
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync();
    const pub: MqttClient = await connect(broker, 'tcp', 5);
    try {
      // MAX_QUEUED are queued; the next 1000 are dropped (drops number 1 … 1000). The first ones one
      // at a time, so that the queue is full when the first drop happens
      for (let i = 0; i <= MAX_QUEUED; i++) await pub.publishAsync(topic, 'xy', { qos: 1 });
      for (let i = 1; i < 1000; i += 111) {
        await Promise.all(Array.from({ length: Math.min(111, 1000 - i) }, () => pub.publishAsync(topic, 'xy', { qos: 1 })));
      }
      const rows = await auditOf(clientId, 2, 'queue_overflow');
      assert.deepEqual(rows.map((r) => ({ ...r })), [1, 1000].map((dropped) => ({
        hub: 'default', event: 'queue_overflow', client_id: clientId, actor: 'broker', remote_address: null, reason_code: null,
        detail: { dropped, topicName: topic, queued: MAX_QUEUED, queuedBytes: 2 * MAX_QUEUED },
      })));
      // The 1001st drop is not audited
      await pub.publishAsync(topic, 'xy', { qos: 1 });
      const barrier = uniqueId('audit-barrier');
      const b = await connect(broker, 'tcp', 5, { clientId: barrier });
      await close(b);
      await auditOf(barrier, 2);
      assert.equal((await auditOf(clientId, 2, 'queue_overflow')).length, 2);
    } finally {
      await close(pub);
    }
  });
});
