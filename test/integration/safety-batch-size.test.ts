// A burst of large retained messages (and wills) all committed by one writer: a group commit is
// capped by rows and bytes (units beyond the cap wait for the next commit, in order), and bytea is
// sent as binary. Before: ~300 retained messages of 1 MiB in one batch were spelled out as one hex
// string longer than V8's maximum string length, and every unit of the batch failed.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Message } from '../../src/mqtt/packet.ts';
import { PgStore } from '../../src/store/pg/pg-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('group commit of many large rows', () => {
  let db: TestDatabase | undefined;
  const stores: PgStore[] = [];
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await db?.drop();
  });

  test('300 retained messages of 1 MiB in one burst are all stored, in order, and come back after a restart', async (t) => {
    db = await createTestDatabase();
    const store = new PgStore({ url: db.url, logger: quiet });
    stores.push(store);
    await store.open();
    const n = 300;
    const hub = 'batch';
    const payloadOf = (i: number): Buffer => {
      const b = Buffer.alloc(MiB, i % 251);
      b.writeUInt32BE(i, 0);
      return b;
    };
    const retained = (i: number, topicName: string, payload: Buffer): Message => ({
      id: 1_000 + i, hub, topicName, payload, qos: 1, retain: true, createdAtMs: 1_000 + i,
    });
    // Submitted in one turn of the event loop: without a cap they all land in one batch
    const units: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) units.push(store.transaction((tx) => tx.putRetained(retained(i, `big/${i}`, payloadOf(i)))));
    // Order across commits: a later unit's value for the same topic wins
    units.push(store.transaction((tx) => tx.putRetained(retained(n, 'big/0', payloadOf(n)))));
    // and a will with a large payload goes through the same path
    const willPayload = payloadOf(n + 1);
    units.push(store.transaction((tx) => {
      tx.putSession({ hub, clientId: 'w', protocolVersion: 5, expiryIntervalSec: 60, connectedAtMs: 1, disconnectedAtMs: null, nodeId: 'n' });
      tx.putWill({ hub, clientId: 'w', delayIntervalSec: 0, messageExpiryIntervalSec: undefined, message: { ...retained(n + 1, 'will/w', willPayload), retain: false } });
    }));
    const results = await Promise.allSettled(units);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    assert.deepEqual(failed.slice(0, 3), [], `${failed.length} of ${units.length} units failed`);
    t.diagnostic(`${units.length} units in ${store.commits} commits`);
    assert.ok(store.commits > 1, 'the burst was split over several commits');

    const rows = await store.query('SELECT topic_name, length(payload) AS len, encode(sha256(payload), \'hex\') AS sha FROM retained_messages WHERE hub = $1', [hub]);
    assert.equal(rows.length, n);
    const byTopic = new Map(rows.map((r) => [r['topic_name'] as string, r]));
    for (let i = 0; i < n; i++) {
      const want = i === 0 ? payloadOf(n) : payloadOf(i);
      assert.equal(byTopic.get(`big/${i}`)?.['sha'], sha(want), `payload of big/${i}`);
    }
    await store.close();

    const again = new PgStore({ url: db.url, logger: quiet });
    stores.push(again);
    await again.open();
    const state = await again.load();
    assert.equal(state.retained.length, n);
    const loaded = new Map(state.retained.map((m) => [m.topicName, m.payload]));
    for (let i = 0; i < n; i++) {
      const got = loaded.get(`big/${i}`);
      assert.ok(got && sha(got) === sha(i === 0 ? payloadOf(n) : payloadOf(i)), `big/${i} after restart`);
    }
    assert.equal(state.wills.length, 1);
    assert.equal(sha(state.wills[0]!.message.payload), sha(willPayload));
  });

  test('a batch sealed while the writer holds it for acknowledgements commits before the batch after it', async () => {
    db ??= await createTestDatabase();
    // Two rows fill a batch; the hold waits long enough for the next unit to arrive during it
    const store = new PgStore({ url: db.url, logger: quiet, maxBatchRows: 2, commitHoldMs: 300 });
    stores.push(store);
    await store.open();
    const hub = 'hold';
    const message: Message = { id: 9_001, hub, topicName: 'hold/t', payload: Buffer.from('x'), qos: 1, retain: false, createdAtMs: 1 };
    await store.transaction((tx) => {
      tx.putSession({ hub, clientId: 's', protocolVersion: 5, expiryIntervalSec: 60, connectedAtMs: 1, disconnectedAtMs: null, nodeId: 'n' });
    });
    // A QoS 1 delivery sent ahead of its commit: the writer holds its batch, waiting for the PUBACK
    const inserted = store.transaction((tx) => {
      tx.insertMessage(message);
      tx.enqueueDeliveries([{ id: 9_002, hub, clientId: 's', messageId: message.id, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 1, state: 'sent', sentAhead: true }]);
    });
    // The writer yields once (setImmediate) and then starts the hold; the acknowledgement arrives during it
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    const deleted = store.transaction((tx) => tx.deleteDelivery(9_002));
    await Promise.all([inserted, deleted]);
    const rows = await store.query('SELECT id FROM deliveries WHERE hub = $1', [hub]);
    assert.deepEqual(rows, [], 'the delete committed before its insert: the delivery row is orphaned');
  });
});
