// The hot statement on PostgreSQL: its values are bound to tern_apply_hot's parameters by name, so
// the order of the parameter table does not matter, and a table that names a parameter the
// function does not have, gives one another type, or leaves one out is refused (SQLSTATE 42883)
// instead of writing a column's values into another column.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Batch } from '../../src/store/pg/batch.ts';
import { HOT_PARAMS, hotStatement, writeHot, type HotParam, type HotRowCounts } from '../../src/store/pg/hot-statement.ts';
import { PgStore } from '../../src/store/pg/pg-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** A batch writing message `id` and one delivery of it to client `c<id>`. */
function batchOf(id: number): Batch {
  const b = new Batch();
  b.insertMessage({ id, hub: 'hot', topicName: `t/${id}`, payload: Buffer.from(`p${id}`), qos: 1, retain: false, createdAtMs: id, publisherId: 'pub' });
  b.enqueueDeliveries([{
    id: id + 1, hub: 'hot', clientId: `c${id}`, messageId: id, qos: 1, retain: false, subscriptionIds: [7], shareKey: undefined, packetId: 3, state: 'queued',
  }]);
  b.addInboundQos2({ hub: 'hot', clientId: `c${id}`, packetId: 11 });
  return b;
}

describe('tern_apply_hot called by parameter name', () => {
  let db: TestDatabase | undefined;
  let store: PgStore | undefined;
  let client: pg.Client | undefined;
  const counts: HotRowCounts = { messages: 0, inserted: 0, updated: 0, deleted: 0 };

  before(async () => {
    db = await createTestDatabase();
    store = new PgStore({ url: db.url, logger: quiet });
    await store.open(); // the migrations
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });

  after(async () => {
    await client?.end();
    await store?.close();
    await db?.drop();
  });

  const reversed = [...HOT_PARAMS].reverse();
  test('the table in the declared order, or reversed, writes the same rows', async () => {
    await writeHot(client!, batchOf(100), counts);
    await writeHot(client!, batchOf(200), counts, hotStatement(reversed));
    const state = await store!.load();
    for (const id of [100, 200]) {
      const m = state.messages.find((x) => x.id === id);
      assert.deepEqual(m && { topicName: m.topicName, payload: m.payload.toString(), publisherId: m.publisherId }, { topicName: `t/${id}`, payload: `p${id}`, publisherId: 'pub' });
      const d = state.deliveries.find((x) => x.id === id + 1);
      assert.deepEqual(d && { clientId: d.clientId, messageId: d.messageId, subscriptionIds: d.subscriptionIds, state: d.state }, { clientId: `c${id}`, messageId: id, subscriptionIds: [7], state: 'queued' });
      assert.ok(state.inboundQos2.some((q) => q.clientId === `c${id}` && q.packetId === 11));
    }
    assert.deepEqual(counts, { messages: 2, inserted: 2, updated: 0, deleted: 0 });
  });

  const mismatched: Array<[string, HotParam[]]> = [
    ['a parameter renamed', HOT_PARAMS.map((p) => (p.name === 'm_topic' ? { ...p, name: 'm_topic_name' } : p))],
    ['two names swapped between parameters of different types', HOT_PARAMS.map((p) => (
      p.name === 'm_qos' ? { ...p, name: 'm_retain' } : p.name === 'm_retain' ? { ...p, name: 'm_qos' } : p))],
    ['a parameter of another type', HOT_PARAMS.map((p) => (p.name === 'd_packet' ? { ...p, type: 'text[]' } : p))],
    ['a parameter missing', HOT_PARAMS.filter((p) => p.name !== 'q_add_packet')],
  ];
  for (const [what, table] of mismatched) {
    test(`${what}: PostgreSQL refuses the call and nothing is written`, async () => {
      const id = 300 + mismatched.findIndex(([w]) => w === what) * 10;
      await assert.rejects(writeHot(client!, batchOf(id), { ...counts }, hotStatement(table)), (e: unknown) => {
        assert.equal((e as { code?: string }).code, '42883', String(e));
        return true;
      });
      const { rows } = await client!.query('SELECT count(*)::int AS n FROM messages WHERE id = $1', [id]);
      assert.equal((rows[0] as { n: number }).n, 0);
    });
  }
});
