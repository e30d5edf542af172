// kill -9 in a loop under mixed load (test/helpers/durable-load.ts): QoS 0/1/2 publishers and
// persistent + clean subscribers over TCP and WebSocket, MQTT 3.1.1 and 5.0, the broker killed
// TERN_CRASH_KILLS times (default 3; `npm run crash-loop -- --kills 20` runs the long version)
// and restarted on the same PostgreSQL database each time. Then: nothing acknowledged to a
// publisher is lost for any persistent subscriber, no QoS 2 message is delivered twice, persistent
// sessions resume, every QoS 2 flow completes, and no broker logged an internal error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../helpers/database.ts';
import { crashLoop, DurableLoad } from '../helpers/durable-load.ts';

const KILLS = Number(process.env['TERN_CRASH_KILLS'] ?? 3);
const SEED = Number(process.env['TERN_CRASH_SEED'] ?? 0xc0ffee);

test(`crash loop: ${KILLS} × kill -9 under mixed load, restarted on the same database (seed ${SEED})`, async (t) => {
  const db = await createTestDatabase();
  const load = new DurableLoad();
  try {
    const r = await crashLoop(load, db.url, { kills: KILLS, ackedPerLife: [100, 400], seed: SEED, timeoutMs: 20_000, log: (l) => t.diagnostic(l) });
    t.diagnostic(`${r.kills} kills: ${r.ackedQos1} QoS 1 + ${r.ackedQos2} QoS 2 acknowledged, ${r.qos0Sent} QoS 0 sent; lost ${JSON.stringify(r.lost)}; ` +
      `QoS 2 duplicates ${JSON.stringify(r.qos2Duplicates)}; QoS 1 redelivered ${JSON.stringify(r.qos1Redeliveries)}; QoS 2 resends ${r.qos2Resends}`);
    assert.ok(r.ackedQos1 > 0 && r.ackedQos2 > 0, 'both QoS 1 and QoS 2 messages were acknowledged');
    assert.deepEqual(Object.values(r.lost).filter((n) => n > 0), [], `acknowledged messages lost: ${JSON.stringify(r.lost)}`);
    assert.deepEqual(Object.values(r.qos2Duplicates).filter((n) => n > 0), [], `QoS 2 delivered twice: ${JSON.stringify(r.qos2Duplicates)}`);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.errorLines, []);
  } finally {
    load.closeAll();
    await db.drop();
  }
});
