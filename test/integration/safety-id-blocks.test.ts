// Ids counted past their block while PostgreSQL was unreachable may be committed once it answers:
// after a restart the next block starts above every stored id, never inside that range.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src/mqtt/packet.ts';
import { PgStore } from '../../src/store/pg/pg-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('id blocks after ids were counted past a block', () => {
  let db: TestDatabase | undefined;
  const stores: PgStore[] = [];
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await db?.drop();
  });

  test('the first block reserved after a restart starts above the largest stored id', async () => {
    db = await createTestDatabase();
    const store = new PgStore({ url: db.url, logger: quiet });
    stores.push(store);
    await store.open();
    const first = await store.reserveIds();
    // An id well past the reserved block, as a node counting on without a block would hand out
    const beyond = first.first + 3 * first.count + 12345;
    const message: Message = { id: beyond, hub: 'ids', topicName: 'ids/t', payload: Buffer.from('x'), qos: 1, retain: true, createdAtMs: 1 };
    await store.transaction((tx) => tx.putRetained(message));
    await store.close();

    const again = new PgStore({ url: db.url, logger: quiet });
    stores.push(again);
    await again.open();
    const next = await again.reserveIds();
    assert.ok(next.first > beyond, `block ${next.first}… would hand out the stored id ${beyond} again`);
    // and opening again moves nothing back
    const third = new PgStore({ url: db.url, logger: quiet });
    stores.push(third);
    await third.open();
    assert.ok((await third.reserveIds()).first > next.first);
  });
});
