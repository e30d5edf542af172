// SIGTERM under load loses nothing acknowledged: QoS 0/1/2 publishers stream to persistent
// subscribers (test/helpers/durable-load.ts: 3.1.1 and 5.0, TCP and WebSocket, one subscriber
// offline) when the broker gets SIGTERM; it exits with code 0 within a bound; a broker restarted
// on the same database then delivers every message that was acknowledged to a publisher (before
// or during the shutdown) to every persistent subscriber, no QoS 2 message twice, and the
// persistent sessions resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { DurableLoad } from '../helpers/durable-load.ts';

/** The shutdown must be over by then (a hang, not a speed limit). */
const EXIT_BOUND_MS = 20_000;

function errorLines(b: BrokerProcess): string[] {
  return b.logs.filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 50).map((l) => `${String(l['msg'])} ${JSON.stringify(l['err'] ?? '')}`);
}

test('SIGTERM under QoS 1/2 load: exit code 0, and after a restart every acknowledged message arrives', async (t) => {
  const db = await createTestDatabase();
  const load = new DurableLoad();
  let broker: BrokerProcess | undefined;
  try {
    broker = await startBroker([], {}, { databaseUrl: db.url });
    await load.startLife(broker);
    await load.acknowledgedMore(500, 20_000);
    const ackedBefore = load.acked;
    const inFlight = load.publishers.reduce((n, p) => n + p.inflight.size, 0);
    // Publishers keep streaming while the broker shuts down
    const exited = broker.stop();
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), EXIT_BOUND_MS).unref())]);
    if (code === 'hung') await broker.kill();
    assert.notEqual(code, 'hung', `the broker did not exit within ${EXIT_BOUND_MS} ms of SIGTERM`);
    assert.equal(code, 0, 'exit code');
    const first = errorLines(broker);
    await load.peersClosed(10_000);
    t.diagnostic(`${ackedBefore} messages acknowledged before SIGTERM (${inFlight} QoS 1/2 publishes in flight then), ${load.acked - ackedBefore} more during the shutdown`);

    broker = await startBroker([], {}, { databaseUrl: db.url });
    await load.startLife(broker);
    await load.finish(broker, 30_000);
    load.closeAll();
    assert.equal(await broker.stop(), 0);
    const r = load.report();
    t.diagnostic(`${r.ackedQos1} QoS 1 + ${r.ackedQos2} QoS 2 acknowledged; lost ${JSON.stringify(r.lost)}; QoS 2 duplicates ${JSON.stringify(r.qos2Duplicates)}; QoS 1 redelivered ${JSON.stringify(r.qos1Redeliveries)}`);
    assert.deepEqual(Object.values(r.lost).filter((n) => n > 0), [], `acknowledged messages lost: ${JSON.stringify(r.lost)}`);
    assert.deepEqual(Object.values(r.qos2Duplicates).filter((n) => n > 0), [], `QoS 2 delivered twice: ${JSON.stringify(r.qos2Duplicates)}`);
    assert.deepEqual(r.problems, []);
    assert.deepEqual([...first, ...errorLines(broker)], []);
  } finally {
    load.closeAll();
    await broker?.kill();
    await db.drop();
  }
});
