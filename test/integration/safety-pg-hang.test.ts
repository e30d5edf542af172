// A PostgreSQL connection that stops answering without closing (a TCP proxy on loopback between
// the broker and the test server, frozen by the test: bytes are no longer forwarded, sockets stay
// open) must be detected within the commit timeout: the commit is abandoned, its units fail (5.0:
// a failure reason code) instead of hanging until the kernel gives up on the socket, commits resume
// once the database answers again, and SIGTERM while it is unreachable ends the process within the
// shutdown deadline.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { LoadPublisher } from '../helpers/load-publisher.ts';
import { FreezableProxy } from '../helpers/tcp-proxy.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Client {
  peer!: RawPeer;
  readonly received: IPublishPacket[] = [];
  #nextId = 1;

  async connect(broker: BrokerProcess, persistent: boolean): Promise<number> {
    this.peer = await RawPeer.open(broker, 'tcp', 5);
    this.peer.on((p) => {
      if (p.cmd !== 'publish') return;
      this.received.push(p);
      if (p.qos === 1) this.peer.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
    });
    return connackCode(await this.peer.connect({
      clientId: uniqueId('hang'), clean: !persistent, ...(persistent ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    }));
  }

  async subscribe(topic: string): Promise<number[]> {
    const messageId = this.#nextId++;
    const suback = this.peer.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, 'SUBACK');
    this.peer.sendPacket({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: 1 }] });
    return ((await suback) as Extract<Packet, { cmd: 'suback' }>).granted as number[];
  }

  async publish(topic: string, payload: string, timeoutMs: number, retain = false): Promise<number> {
    const messageId = this.#nextId++;
    const ack = this.peer.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, `PUBACK for ${payload}`, timeoutMs);
    this.peer.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false, messageId });
    return ((await ack) as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0;
  }

  payloads(): string[] {
    return this.received.map((p) => Buffer.from(p.payload).toString());
  }
}

describe('a PostgreSQL connection that stops answering', { concurrency: false }, () => {
  let db: TestDatabase | undefined;
  let proxy: FreezableProxy | undefined;
  let broker: BrokerProcess | undefined;
  const peers: Client[] = [];
  after(async () => {
    for (const c of peers) c.peer?.destroy();
    proxy?.thaw();
    await broker?.kill();
    await proxy?.close();
    await db?.drop();
  });

  test('is detected within the commit timeout; commits resume after; SIGTERM exits within the shutdown deadline', async (t) => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    proxy = new FreezableProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.listen();
    url.host = `127.0.0.1:${proxy.port}`;
    broker = await startBroker(['--database-url', url.toString(), '--db-commit-timeout-ms', '2000', '--shutdown-timeout-ms', '5000']);
    const topic = `hang/${uniqueId('t')}`;
    const sub = new Client();
    const pub = new Client();
    peers.push(sub, pub);
    assert.equal(await sub.connect(broker, true), 0);
    assert.deepEqual(await sub.subscribe(topic), [1]);
    assert.equal(await pub.connect(broker, false), 0);
    assert.equal(await pub.publish(topic, 'before', 10_000), 0);

    proxy.freeze();
    const t0 = Date.now();
    // Before: no answer until the kernel drops the socket (~15 min). 30 s is far above the 2 s timeout.
    // Retained: a row that must be committed (a delivery row may be cancelled by the subscriber's
    // quick PUBACK and need no commit at all)
    const rc = await pub.publish(topic, 'frozen', 30_000, true);
    t.diagnostic(`PUBACK 0x${rc.toString(16)} ${Date.now() - t0} ms after the database stopped answering (commit timeout 2000 ms)`);
    assert.ok(rc >= 0x80, `a message that could not be stored gets a failure code, not 0x${rc.toString(16)}`);
    assert.ok(broker.logs.some((l) => l['msg'] === 'commit timed out; its connection is abandoned'), 'the abandoned commit is logged');

    proxy.thaw();
    const deadline = Date.now() + 30_000;
    const codes: number[] = [];
    for (let i = 0; ; i++) {
      const c = await pub.publish(topic, `after-${i}`, 30_000);
      codes.push(c);
      if (c === 0) break;
      assert.ok(Date.now() < deadline, `commits did not resume: ${codes.join(',')}`);
      await sleep(200);
    }
    const ok = `after-${codes.length - 1}`;
    const until = Date.now() + 10_000;
    while (!sub.payloads().includes(ok) && Date.now() < until) await sleep(20);
    assert.ok(sub.payloads().includes(ok), 'the acknowledged message reached the subscriber');

    // SIGTERM while the database does not answer: the process ends within its shutdown deadline
    proxy.freeze();
    const pending = pub.publish(topic, 'at-shutdown', 60_000).catch(() => undefined);
    const s0 = Date.now();
    const exited = broker.stop();
    const code = await Promise.race([exited, sleep(30_000).then(() => 'still running' as const)]);
    t.diagnostic(`exit code ${String(code)} ${Date.now() - s0} ms after SIGTERM (shutdown deadline 5000 ms)`);
    assert.notEqual(code, 'still running', 'the broker did not exit within 30 s of SIGTERM');
    await pending;
  });
});

// A connection that dies in the middle of a commit without a word from the server (network failure,
// server crash): pg fails the query and also emits 'error' on the checked-out client. That must be
// a handled failure (the commit fails, the writer goes on), not an uncaught exception, which ends
// the process now that unknown exceptions are no longer swallowed.
describe('PostgreSQL connections cut in the middle of commits', { concurrency: false }, () => {
  let db: TestDatabase | undefined;
  let proxy: FreezableProxy | undefined;
  let broker: BrokerProcess | undefined;
  const pubs: LoadPublisher[] = [];
  after(async () => {
    for (const p of pubs) p.peer?.destroy();
    await broker?.kill();
    await proxy?.close();
    await db?.drop();
  });

  test('the broker survives, nothing acknowledged is lost, commits resume', async (t) => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    proxy = new FreezableProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.listen();
    url.host = `127.0.0.1:${proxy.port}`;
    broker = await startBroker(['--database-url', url.toString()]);
    const topic = `cut/${uniqueId('t')}`;
    const sub = new Client();
    assert.equal(await sub.connect(broker, true), 0);
    assert.deepEqual(await sub.subscribe(topic), [1]);
    pubs.push(new LoadPublisher('cut-v5', 5, topic), new LoadPublisher('cut-v4', 4, topic));
    for (const p of pubs) await p.connect(broker);
    for (const p of pubs) p.start();
    const acked = (): number => pubs.reduce((n, p) => n + p.acked.length, 0);
    const waitAcked = async (n: number, what: string): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (acked() < n) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        assert.equal(broker!.proc.exitCode, null, `the broker exited: ${JSON.stringify(broker!.logs.filter((l) => Number(l['level']) >= 50))}`);
        await sleep(10);
      }
    };
    await waitAcked(100, '100 acknowledged publishes');
    for (let i = 0; i < 5; i++) {
      proxy.cut(); // under this load a commit is almost always in flight
      await waitAcked(acked() + 50, `50 more acknowledged publishes after cut ${i + 1}`);
    }
    for (const p of pubs) await p.stop(30_000);
    assert.equal(broker.proc.exitCode, null, 'the broker process is still running');
    const fatal = broker.logs.filter((l) => Number(l['level']) >= 60 || /uncaught|unhandled/.test(String(l['msg'])));
    assert.deepEqual(fatal, [], 'no uncaught exception or unhandled rejection');
    const all = pubs.flatMap((p) => p.acked);
    t.diagnostic(`acknowledged ${all.length}, refused ${pubs[0]!.failed.length + pubs[1]!.failed.length}`);
    const deadline = Date.now() + 15_000;
    while (!all.every((m) => sub.payloads().includes(m)) && Date.now() < deadline) await sleep(20);
    const got = new Set(sub.payloads());
    assert.deepEqual(all.filter((m) => !got.has(m)), [], 'acknowledged messages the subscriber never got');
    sub.peer.destroy();
  });
});
