// How PgStore lays out durable messages (migrations/0006): a message with one delivery in its
// commit is stored inside that delivery's row, one with more in a messages row of its own; ids
// reserved after a restart start above every stored message id, wherever the message is kept.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src/mqtt/packet.ts';
import { PgStore } from '../../src/store/pg/pg-store.ts';
import type { DeliveryRecord } from '../../src/store/store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const HUB = 'inline';

function message(id: number, over: Partial<Message> = {}): Message {
  return { id, hub: HUB, topicName: `t/${id}`, payload: Buffer.from(`p${id}`), qos: 1, retain: false, createdAtMs: 1000 + id, ...over };
}

function delivery(id: number, m: Message, clientId = 'c'): DeliveryRecord {
  return { id, hub: HUB, clientId, messageId: m.id, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 0, state: 'queued' };
}

describe('PgStore: messages inside their delivery rows', () => {
  let db: TestDatabase | undefined;
  let store: PgStore | undefined;
  const count = async (sql: string, params: unknown[]): Promise<number> => Number((await store!.query(sql, params))[0]!['n']);

  before(async () => {
    db = await createTestDatabase();
    store = new PgStore({ url: db.url, logger: quiet });
    await store.open();
  });

  after(async () => {
    await store?.close();
    await db?.drop();
  });

  test('one delivery: one row, no messages row; two deliveries: a messages row they share', async () => {
    const single = message(10);
    const double = message(20);
    await store!.transaction((tx) => { tx.insertMessage(single); tx.enqueueDeliveries([delivery(11, single)]); });
    await store!.transaction((tx) => { tx.insertMessage(double); tx.enqueueDeliveries([delivery(21, double, 'c'), delivery(22, double, 'd')]); });
    assert.equal(await count('SELECT count(*) AS n FROM messages WHERE id = $1', [single.id]), 0);
    assert.equal(await count('SELECT count(*) AS n FROM deliveries WHERE id = 11 AND message_payload IS NOT NULL', []), 1);
    assert.equal(await count('SELECT count(*) AS n FROM messages WHERE id = $1', [double.id]), 1);
    assert.equal(await count('SELECT count(*) AS n FROM deliveries WHERE message_id = $1 AND message_payload IS NULL', [double.id]), 2);
    // Acknowledged: nothing of the single-delivery message is left, and no garbage to collect later
    await store!.transaction((tx) => tx.deleteDelivery(11));
    assert.equal(await count('SELECT count(*) AS n FROM deliveries WHERE message_id = $1', [single.id]), 0);
  });

  test('ids reserved after a restart start above a message id kept only inside a delivery row', async () => {
    const { first, count: block } = await store!.reserveIds();
    // A message id from a block further on (as counted past a block while PostgreSQL was unreachable)
    const far = message(first + 3 * block + 5);
    await store!.transaction((tx) => { tx.insertMessage(far); tx.enqueueDeliveries([delivery(first + 1, far)]); });
    assert.equal(await count('SELECT count(*) AS n FROM messages WHERE id = $1', [far.id]), 0);
    const again = new PgStore({ url: db!.url, logger: quiet });
    await again.open();
    try {
      const next = await again.reserveIds();
      assert.ok(next.first > far.id, `next block starts at ${next.first}, at or below stored message id ${far.id}`);
      const s = await again.load();
      assert.deepEqual(s.messages.find((m) => m.id === far.id)?.payload, far.payload);
    } finally {
      await again.close();
    }
  });
});
