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

describe('tern_apply_hot: commit order of two batches written at once', () => {
  let db: TestDatabase | undefined;
  let store: PgStore | undefined;
  const clients: pg.Client[] = [];
  const counts: HotRowCounts = { messages: 0, inserted: 0, updated: 0, deleted: 0 };

  before(async () => {
    db = await createTestDatabase();
    store = new PgStore({ url: db.url, logger: quiet });
    await store.open();
    for (let i = 0; i < 3; i++) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      clients.push(c);
    }
    // The first batch's insert is slow: a later batch finishes its statements first
    await clients[2]!.query(`CREATE FUNCTION tern_test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.client_id = 'c1000' THEN PERFORM pg_sleep(0.3); END IF; RETURN NULL; END $$`);
    await clients[2]!.query('CREATE TRIGGER tern_test_slow_insert AFTER INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION tern_test_slow_insert()');
  });

  after(async () => {
    for (const c of clients) await c.end();
    await store?.close();
    await db?.drop();
  });

  test('the batch started second commits after the first, though its statement is done first', async () => {
    const committed: number[] = [];
    const first = writeHot(clients[0]!, batchOf(1000), counts, undefined, { space: 42, lock: 0, after: undefined }).then(() => committed.push(1000));
    // (pg_locks: the first holds its lock, so it is inside its slow statement)
    const held = `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 42 AND objid = 0`;
    const deadline = Date.now() + 10_000;
    while ((await clients[2]!.query(held)).rows.length === 0) {
      if (Date.now() > deadline) throw new Error('the first batch never took its lock');
      await new Promise((r) => setTimeout(r, 5));
    }
    const second = writeHot(clients[1]!, batchOf(2000), counts, undefined, { space: 42, lock: 1, after: 0 }).then(() => committed.push(2000));
    await Promise.all([first, second]);
    assert.deepEqual(committed, [1000, 2000]);
    const state = await store!.load();
    assert.ok(state.deliveries.some((d) => d.id === 1001) && state.deliveries.some((d) => d.id === 2001));
  });
});
