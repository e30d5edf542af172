// Audit limits: a detail larger than --max-audit-detail-bytes is stored truncated with a marker,
// and rows older than --audit-retention-days are deleted in bounded batches.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PgStore } from '../../src/store/pg/pg-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('audit limits', () => {
  let db: TestDatabase | undefined;
  const stores: PgStore[] = [];
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await db?.drop();
  });

  test('a large detail is stored truncated, with a marker; a small one as it is', async () => {
    db ??= await createTestDatabase();
    const store = new PgStore({ url: db.url, logger: quiet, maxAuditDetailBytes: 1024, auditRetentionDays: 0 });
    stores.push(store);
    await store.open();
    const big = { topicName: 'x'.repeat(100_000), quoted: '"\\'.repeat(1000) };
    await store.transaction((tx) => tx.appendAudit({ hub: 'h-detail', event: 'big', atMs: Date.now(), detail: big }));
    await store.transaction((tx) => tx.appendAudit({ hub: 'h-detail', event: 'small', atMs: Date.now(), detail: { n: 1, s: 'ok' } }));
    const rows = await store.query(`SELECT event, detail, octet_length(detail::text) AS len FROM audit_events WHERE hub = 'h-detail' ORDER BY id`);
    assert.equal(rows.length, 2);
    const d = rows[0]!['detail'] as { truncated?: boolean; bytes?: number; head?: string };
    assert.equal(d.truncated, true, 'marked as truncated');
    assert.equal(d.bytes, Buffer.byteLength(JSON.stringify(big)), 'the full size is recorded');
    assert.ok(typeof d.head === 'string' && d.head.startsWith('{"topicName":"xxx'), 'the start of the detail is kept');
    assert.ok(Number(rows[0]!['len']) <= 1100, `stored detail is ${String(rows[0]!['len'])} bytes`);
    assert.deepEqual(rows[1]!['detail'], { n: 1, s: 'ok' });
    // U+0000 (which jsonb refuses) does not cost the row
    await store.transaction((tx) => tx.appendAudit({ hub: 'h-detail', event: 'nul', atMs: Date.now(), detail: { clientSaid: 'a\u0000b' } }));
    const [nul] = await store.query(`SELECT detail FROM audit_events WHERE hub = 'h-detail' AND event = 'nul'`);
    assert.deepEqual(nul!['detail'], { clientSaid: 'a\ufffdb' });
  });

  test('rows older than the retention are deleted in bounded batches; newer ones stay', async () => {
    db ??= await createTestDatabase();
    const setup = new PgStore({ url: db.url, logger: quiet, auditRetentionDays: 0 });
    stores.push(setup);
    await setup.open();
    // 1,050 rows 10 days old, 20 rows 2 days old, 5 from now
    await setup.query(`INSERT INTO audit_events (at, hub, event) SELECT now() - interval '10 days', 'h-ret', 'old' FROM generate_series(1, 1050)`);
    await setup.query(`INSERT INTO audit_events (at, hub, event) SELECT now() - interval '2 days', 'h-ret', 'recent' FROM generate_series(1, 20)`);
    await setup.query(`INSERT INTO audit_events (at, hub, event) SELECT now(), 'h-ret', 'now' FROM generate_series(1, 5)`);
    await setup.close();

    const store = new PgStore({ url: db.url, logger: quiet, auditRetentionDays: 7 });
    stores.push(store);
    await store.open(); // prunes at start too
    const r = await store.pruneAudit(100);
    const count = async (): Promise<Record<string, number>> => Object.fromEntries(
      (await store.query(`SELECT event, count(*)::int AS n FROM audit_events WHERE hub = 'h-ret' GROUP BY event`)).map((x) => [x['event'], x['n']]));
    assert.deepEqual(await count(), { recent: 20, now: 5 }, `after pruning (last run: ${JSON.stringify(r)})`);

    // Bounded: 1,050 old rows at 100 per statement take 11 statements
    await store.query(`INSERT INTO audit_events (at, hub, event) SELECT now() - interval '10 days', 'h-ret', 'old' FROM generate_series(1, 1050)`);
    assert.deepEqual(await store.pruneAudit(100), { deleted: 1050, statements: 11 });
    assert.deepEqual(await count(), { recent: 20, now: 5 });
  });
});
