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

  test('garbage collection deletes messages rows no plain delivery references; a message kept inline stays loadable', async () => {
    const kept = message(300, { createdAtMs: 0 });
    const gone = message(310, { createdAtMs: 0 });
    const inline = message(320, { createdAtMs: 0 });
    const handedOff = message(330, { createdAtMs: 0 });
    await store!.transaction((tx) => {
      tx.insertMessage(kept);
      tx.enqueueDeliveries([delivery(301, kept, 'c'), delivery(302, kept, 'd')]);
      tx.insertMessage(gone);
      tx.enqueueDeliveries([delivery(311, gone, 'c'), delivery(312, gone, 'd')]);
      tx.insertMessage(inline);
      tx.enqueueDeliveries([delivery(321, inline)]);
      tx.insertMessage(handedOff);
      tx.enqueueDeliveries([delivery(331, handedOff, 'c'), delivery(333, handedOff, 'e')]);
    });
    // a later delivery of a message that has a messages row carries it too (the only one of its commit);
    // once the first two are acknowledged, the messages row is garbage and the message still loads
    await store!.transaction((tx) => { tx.insertMessage(handedOff); tx.enqueueDeliveries([delivery(332, handedOff, 'd')]); });
    await store!.transaction((tx) => { for (const id of [311, 312, 331, 333, 302]) tx.deleteDelivery(id); });
    assert.equal(await store!.collectGarbage(), 2);
    const left = (await store!.query('SELECT id FROM messages WHERE id = ANY($1) ORDER BY id', [[300, 310, 320, 330]])).map((r) => Number(r['id']));
    assert.deepEqual(left, [300]);
    const s = await store!.load();
    for (const m of [kept, inline, handedOff]) assert.deepEqual(s.messages.find((x) => x.id === m.id)?.payload, m.payload, `message ${m.id}`);
    assert.equal(s.messages.find((x) => x.id === gone.id), undefined);
    const [index] = await store!.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'deliveries_message_idx'`);
    assert.match(String(index?.['indexdef']), /WHERE \(message_payload IS NULL\)/);
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
