// Store contract against PgStore on a fresh database.
import { PgStore } from '../../src/store/pg/pg-store.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { describeStoreContract } from './store.contract.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describeStoreContract('PgStore', async () => {
  const db = await createTestDatabase();
  const store = new PgStore({ url: db.url, logger: quiet });
  await store.open();
  const others: PgStore[] = [];
  return {
    store,
    readAudit: async (hub) => (await store.query('SELECT event, client_id, reason_code FROM audit_events WHERE hub = $1 ORDER BY id', [hub]))
      .map((r) => ({ event: r['event'] as string, clientId: (r['client_id'] as string | null) ?? undefined, reasonCode: (r['reason_code'] as number | null) ?? undefined })),
    reopen: async () => {
      const again = new PgStore({ url: db.url, logger: quiet });
      await again.open(); // migrations are idempotent
      others.push(again);
      return again;
    },
    close: async () => {
      await store.close();
      for (const o of others) await o.close();
      await db.drop();
    },
  };
});
