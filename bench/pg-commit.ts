// How long PostgreSQL itself takes for the group commits of the durable QoS 1 path, without the
// broker: batches of N messages, each with one delivery inserted, and the deliveries of the
// previous batch deleted (the subscriber acknowledged them after the commit), through the same
// PgStore as the broker. With --retained: batches of N retained messages on new topics instead.
// Usage: npx tsx bench/pg-commit.ts [--batch 400] [--batches 200] [--retained]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startEmbeddedPostgres } from '../src/postgres/embedded.ts';
import { PgStore } from '../src/store/pg/pg-store.ts';

const { values: opt } = parseArgs({ options: { batch: { type: 'string' }, batches: { type: 'string' }, retained: { type: 'boolean', default: false } } });
const N = Number(opt.batch ?? 400);
const BATCHES = Number(opt.batches ?? 200);
const quiet = { info: () => undefined, warn: () => undefined, error: (o: object, m?: string) => console.error(m, o) };

const dir = mkdtempSync(path.join(os.tmpdir(), 'tern-pgc-'));
const db = await startEmbeddedPostgres({ dataDir: dir, logger: quiet });
const store = new PgStore({ url: db.url, logger: quiet });
await store.open();
let id = 1;
let previous: number[] = [];
const payload = Buffer.alloc(64, 1);
const times: number[] = [];
for (let b = 0; b < BATCHES; b++) {
  const ids: number[] = [];
  const t0 = performance.now();
  await store.transaction((tx) => {
    if (opt.retained) {
      for (let i = 0; i < N; i++) {
        tx.putRetained({ id: id++, hub: 'default', topicName: `bench/r/${b}/${i}`, payload, qos: 0, retain: true, createdAtMs: Date.now(), publisherId: 'p' });
      }
      return;
    }
    for (const d of previous) tx.deleteDelivery(d);
    for (let i = 0; i < N; i++) {
      const m = { id: id++, hub: 'default', topicName: 'bench/t', payload, qos: 1 as const, retain: false, createdAtMs: Date.now(), publisherId: 'p' };
      const d = id++;
      ids.push(d);
      tx.insertMessage(m);
      tx.enqueueDeliveries([{ id: d, hub: 'default', clientId: 'sub', messageId: m.id, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: (i % 65535) + 1, state: 'sent' }]);
    }
  });
  times.push(performance.now() - t0);
  previous = ids;
}
times.sort((a, b) => a - b);
const q = (p: number): string => times[Math.floor((times.length - 1) * p)]!.toFixed(2);
console.log(`${BATCHES} commits of ${N} ${opt.retained ? 'retained messages' : `messages (+ ${N} deliveries inserted, ${N} deleted)`}: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, max ${q(1)} ms → ${Math.round((N * 1000) / Number(q(0.5)))} messages/s at p50`);
await store.close();
await db.stop();
rmSync(dir, { recursive: true, force: true });
