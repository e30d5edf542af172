// The test database harness (scripts/run-tests.mjs + test/helpers/database.ts): each created database
// is empty and independent of the others, and drop() removes it even with connections still open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase } from '../helpers/database.ts';

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

test('two test databases are independent, and drop() removes one while a client is still connected', async () => {
  const [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  assert.notEqual(a.url, b.url);
  const clientA = await connect(a.url);
  const clientB = await connect(b.url);
  try {
    await clientA.query("create table things (v text); insert into things values ('in a')");
    assert.deepEqual((await clientA.query('select v from things')).rows, [{ v: 'in a' }]);
    await assert.rejects(clientB.query('select v from things'), { code: '42P01' }); // undefined_table
    await clientB.query('create table things (v int)');
    assert.deepEqual((await clientB.query('select count(*)::int as n from things')).rows, [{ n: 0 }]);

    // WITH (FORCE) ends clientA's session; the client reports that as error events (the FATAL, then the lost socket)
    const terminated = new Promise<unknown>((resolve) => clientA.on('error', resolve));
    await a.drop();
    await terminated;
    await a.drop(); // idempotent
    await assert.rejects(connect(a.url), { code: '3D000' }); // invalid_catalog_name: it is gone
    assert.deepEqual((await clientB.query('select count(*)::int as n from things')).rows, [{ n: 0 }]);
  } finally {
    await clientA.end().catch(() => {}); // already terminated by the drop
    await clientB.end();
    await b.drop();
  }
  await assert.rejects(connect(b.url), { code: '3D000' });
});
