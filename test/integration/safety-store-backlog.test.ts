// When PostgreSQL falls behind, the broker stops reading from publishers instead of buffering their
// messages without bound. Here the database stops answering (a frozen loopback proxy; the commit
// timeout is set far above the test) while a TCP publisher floods QoS 1 publishes, 10 KiB each, to
// a persistent session without waiting for acknowledgements. The broker's backlog limit is 2 MiB:
// it must pause reading that socket (the publisher's own writes then back up), its resident memory
// must stay bounded, and once the database answers again reading resumes and every publish is
// acknowledged.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { FreezableProxy } from '../helpers/tcp-proxy.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

describe('PostgreSQL falling behind', { concurrency: false }, () => {
  let db: TestDatabase | undefined;
  let proxy: FreezableProxy | undefined;
  let broker: BrokerProcess | undefined;
  const sockets: net.Socket[] = [];
  const peers: RawPeer[] = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const p of peers) p.destroy();
    proxy?.thaw();
    await broker?.kill();
    await proxy?.close();
    await db?.drop();
  });

  test('pauses reading from a flooding TCP publisher; memory stays bounded; reading resumes after', async (t) => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    proxy = new FreezableProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.listen();
    url.host = `127.0.0.1:${proxy.port}`;
    broker = await startBroker(['--database-url', url.toString(), '--db-commit-timeout-ms', '600000',
      '--max-store-backlog-bytes', String(2 * MiB), '--max-store-backlog-units', '100000']);
    const topic = `backlog/${uniqueId('t')}`;

    // A persistent session, offline: every publish is a message and a delivery row to commit
    const subId = uniqueId('backlog-sub');
    const sub = await RawPeer.open(broker, 'tcp', 5);
    peers.push(sub);
    assert.equal(connackCode(await sub.connect({ clientId: subId, clean: false, properties: { sessionExpiryInterval: 3600 } })), 0);
    const suback = sub.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    sub.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;
    sub.sendPacket({ cmd: 'disconnect', reasonCode: 0 });
    await sub.closed();

    // The flooding publisher: a raw socket, 3.1.1, counting PUBACKs
    const socket = net.connect(broker.mqttPort, broker.host);
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let connacked = false;
    let pubacks = 0;
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'connack') connacked = true;
      if (p.cmd === 'puback') pubacks++;
    });
    socket.on('data', (b) => parser.parse(b));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: uniqueId('flood'), keepalive: 0 }));
    while (!connacked) await sleep(10);
    const baseline = rssBytes(broker.proc.pid!);

    proxy.freeze();
    const n = 20_000; // 200 MiB of payload
    const payload = Buffer.alloc(10 * 1024, 7);
    let written = 0;
    let peakRss = baseline;
    const sample = (): void => { peakRss = Math.max(peakRss, rssBytes(broker!.proc.pid!)); };
    // Write as fast as the socket takes them; once the broker stops reading, write() reports a full
    // buffer and 'drain' never comes: that is the pause, seen from the publisher
    let stalled = false;
    while (written < n) {
      const ok = socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: (written % 65535) + 1, retain: false, dup: false }));
      written++;
      if (!ok) {
        const drained = await Promise.race([
          new Promise<boolean>((r) => socket.once('drain', () => r(true))),
          (async () => {
            // not drained while the broker says it paused reading: stalled for good
            const deadline = Date.now() + 60_000;
            while (Date.now() < deadline) {
              sample();
              if (broker!.logs.some((l) => l['msg'] === 'PostgreSQL writer behind; reading from publishers paused')) {
                await sleep(1000); // let the broker settle, then look at its memory again
                sample();
                return false;
              }
              await sleep(50);
            }
            return false;
          })(),
        ]);
        if (!drained) { stalled = true; break; }
      }
    }
    sample();
    t.diagnostic(`publisher wrote ${written} of ${n} publishes (${Math.round(written * 10 / 1024)} MiB) before stalling=${stalled}; broker RSS ${Math.round(baseline / MiB)} MiB at start, peak ${Math.round(peakRss / MiB)} MiB`);
    assert.ok(stalled, 'the broker stopped reading from the publisher');
    assert.ok(written < n, 'the publisher could not hand the broker everything while the database was stuck');
    assert.ok(peakRss - baseline < 100 * MiB, `broker memory grew by ${Math.round((peakRss - baseline) / MiB)} MiB while the database was stuck`);

    // The database answers again: reading resumes, every publish written is acknowledged
    proxy.thaw();
    const rest = n - written;
    for (let i = 0; i < rest; i++) {
      if (!socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: ((written + i) % 65535) + 1, retain: false, dup: false }))) {
        await new Promise<void>((r) => socket.once('drain', () => r()));
      }
    }
    const deadline = Date.now() + 120_000;
    while (pubacks < n && Date.now() < deadline && !socket.destroyed) await sleep(50);
    assert.equal(pubacks, n, 'every publish acknowledged once the database answered again');
    assert.ok(broker.logs.some((l) => l['msg'] === 'PostgreSQL writer caught up; reading from publishers resumed'));
  });
});
