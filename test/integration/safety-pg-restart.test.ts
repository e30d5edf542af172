// PostgreSQL stopped and started again while publishers keep publishing (DESIGN.md §3): the broker
// process survives (a connection dying in the middle of a commit is a handled failure, never an
// uncaught exception, which would now end the process), nothing acknowledged is lost, and commits
// resume by themselves once the server is back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { LoadPublisher } from '../helpers/load-publisher.ts';
import { OwnPostgres } from '../helpers/own-postgres.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(done: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('PostgreSQL restarted under load', { concurrency: false }, () => {
  const pg = new OwnPostgres();
  let broker: BrokerProcess | undefined;
  let databaseUrl = '';

  before(async () => { databaseUrl = await pg.create('tern_restart'); }, { timeout: 50_000 });

  after(async () => {
    await broker?.kill();
    await pg.dispose();
  });

  test('the broker survives, nothing acknowledged is lost, commits resume', async (t) => {
    broker = await startBroker([], {}, { databaseUrl });
    const topic = `restart/${uniqueId('t')}`;
    const received = new Set<string>();
    const sub = await RawPeer.open(broker, 'tcp', 5);
    sub.on((p) => {
      if (p.cmd !== 'publish') return;
      received.add(Buffer.from((p as IPublishPacket).payload).toString());
      if (p.qos === 1) sub.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
    });
    assert.equal(connackCode(await sub.connect({ clientId: uniqueId('restart-sub'), clean: false, properties: { sessionExpiryInterval: 3600 } })), 0);
    const suback = sub.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    sub.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;

    const pubs = [new LoadPublisher('v5', 5, topic), new LoadPublisher('v4', 4, topic)];
    for (const p of pubs) await p.connect(broker);
    for (const p of pubs) p.start();
    const acked = (): number => pubs.reduce((n, p) => n + p.acked.length, 0);
    await until(() => acked() >= 100, '100 acknowledged publishes before the restart', 30_000);

    for (let round = 0; round < 1; round++) {
      const failures = (): number => broker!.logs.filter((l) => String(l['msg']).startsWith('commit failed')).length;
      const seen = failures();
      await pg.stop();
      await until(() => failures() > seen, 'the broker to notice the outage', 30_000);
      await pg.start();
      const before = acked();
      await until(() => acked() >= before + 100, `100 more acknowledged publishes after restart ${round + 1}`, 60_000);
    }
    for (const p of pubs) await p.stop(60_000);

    assert.equal(broker.proc.exitCode, null, 'the broker process is still running');
    assert.equal(broker.proc.signalCode, null, 'the broker process is still running');
    const fatal = broker.logs.filter((l) => Number(l['level']) >= 60 || /uncaught|unhandled/.test(String(l['msg'])));
    assert.deepEqual(fatal, [], 'no uncaught exception or unhandled rejection');
    const all = pubs.flatMap((p) => p.acked);
    t.diagnostic(`acknowledged ${all.length} (v5 ${pubs[0]!.acked.length}, v4 ${pubs[1]!.acked.length}); refused ${pubs[0]!.failed.length + pubs[1]!.failed.length}`);
    await until(() => all.every((m) => received.has(m)), 'every acknowledged message at the subscriber', 30_000).catch(() => undefined);
    const lost = all.filter((m) => !received.has(m));
    assert.deepEqual(lost, [], 'acknowledged messages the subscriber never got');
    sub.destroy();
    for (const p of pubs) p.peer.destroy();
  });
});
