// Rows PostgreSQL refuses (here: a retained message whose ~8 KB high-entropy topic is too large
// for the retained_messages primary-key btree, SQLSTATE 54000) must cost only the request that
// carried them: the writer keeps its database connection (no new backend per failed attempt), an
// innocent durable publisher keeps being acknowledged, a 5.0 publisher of the refused message gets
// a failure reason code and stays connected, and a 3.1.1 publisher of it is disconnected instead of
// having its commit retried for as long as the connection lasts.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A topic of ~8 KB random text: no btree index row can hold it. */
function hugeTopic(prefix: string): string {
  return `${prefix}/${randomBytes(6000).toString('base64').replace(/[+/=]/g, 'x')}`;
}

class Client {
  peer!: RawPeer;
  readonly received: IPublishPacket[] = [];
  #nextId = 1;
  constructor(readonly name: string, readonly transport: Transport, readonly version: Version) {}

  async connect(broker: BrokerProcess, persistent: boolean): Promise<number> {
    this.peer = await RawPeer.open(broker, this.transport, this.version);
    this.peer.on((p) => {
      if (p.cmd !== 'publish') return;
      this.received.push(p);
      if (p.qos === 1) this.peer.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
    });
    return connackCode(await this.peer.connect({
      clientId: uniqueId(this.name), clean: !persistent,
      ...(persistent && this.version === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    }));
  }

  async subscribe(topic: string): Promise<number[]> {
    const messageId = this.#nextId++;
    const suback = this.peer.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, `${this.name} SUBACK`);
    this.peer.sendPacket({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: 1 }] });
    return ((await suback) as Extract<Packet, { cmd: 'suback' }>).granted as number[];
  }

  /** QoS 1 publish; resolves with the PUBACK reason code. */
  async publish(topic: string, payload: string, retain = false, timeoutMs = 20_000): Promise<number> {
    const messageId = this.#nextId++;
    const ack = this.peer.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, `${this.name} PUBACK for ${payload}`, timeoutMs);
    this.peer.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false, messageId });
    return ((await ack) as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0;
  }

  payloads(): string[] {
    return this.received.map((p) => Buffer.from(p.payload).toString());
  }
}

describe('rows PostgreSQL refuses', { concurrency: false }, () => {
  let broker: (BrokerProcess & { databaseUrl: string | undefined }) | undefined;
  let admin: pg.Client | undefined;
  const peers: Client[] = [];
  after(async () => {
    for (const c of peers) c.peer?.destroy();
    await admin?.end().catch(() => undefined);
    await broker?.stop();
  });

  test('fail only their own request, on the same database connection; 3.1.1 publisher disconnected, not retried', async (t) => {
    broker = await startBroker();
    admin = new pg.Client({ connectionString: broker.databaseUrl });
    await admin.connect();
    const run = uniqueId('refused').replace(/[^a-zA-Z0-9-]/g, '');
    const sub = new Client('sub', 'tcp', 5);
    const good = new Client('good-v4', 'tcp', 4);
    const bad5 = new Client('bad-v5', 'tcp', 5);
    peers.push(sub, good, bad5);
    assert.equal(await sub.connect(broker, true), 0);
    assert.deepEqual(await sub.subscribe(`${run}/#`), [1]);
    assert.equal(await good.connect(broker, false), 0);
    assert.equal(await bad5.connect(broker, false), 0);
    // Warm up: the writer has its connection before we start counting backends
    assert.equal(await good.publish(`${run}/good`, 'warm-up'), 0);
    const sessions = async (): Promise<number> => {
      // cumulative count of connections ever made to this database (a closed one stays counted)
      const r = await admin!.query<{ n: number }>('SELECT sessions::int AS n FROM pg_stat_database WHERE datname = current_database()');
      return r.rows[0]!.n;
    };
    const sessionsBefore = await sessions();

    // An innocent durable publisher, paced so that commits are in flight while refused units arrive
    const n = 200;
    const goodAcks: Array<Promise<number>> = [];
    const badAcks: Array<Promise<number>> = [];
    for (let i = 0; i < n; i++) {
      goodAcks.push(good.publish(`${run}/good`, `g-${i}`));
      if (i % 10 === 5) badAcks.push(bad5.publish(hugeTopic(`${run}/bad`), `b-${i}`, true));
      if (i % 10 === 9) await sleep(2);
    }
    const badCodes = await Promise.all(badAcks);
    t.diagnostic(`5.0 refused publishes: PUBACK ${badCodes.map((c) => `0x${c.toString(16)}`).join(', ')}`);
    assert.ok(badCodes.every((c) => c >= 0x80), 'a message PostgreSQL refused is not acknowledged with success');
    assert.ok(!bad5.peer.isClosed, 'the 5.0 publisher of a refused message stays connected');

    // A 3.1.1 publisher has no negative acknowledgement: its connection is closed, at once rather
    // than after retrying a deterministic error for as long as it stays open
    const bad4 = new Client('bad-v4', 'tcp', 4);
    peers.push(bad4);
    assert.equal(await bad4.connect(broker, false), 0);
    const held = bad4.publish(hugeTopic(`${run}/bad4`), 'bad-v4', true, 30_000).then((rc) => `PUBACK ${rc}`, (e: Error) => e.message);
    await bad4.peer.closed(15_000);
    assert.match(await held, /connection closed/, 'no PUBACK for a message that was not stored');

    const goodCodes = await Promise.all(goodAcks);
    assert.deepEqual(goodCodes, new Array(n).fill(0), 'every innocent publish acknowledged');
    const deadline = Date.now() + 15_000;
    const want = Array.from({ length: n }, (_, i) => `g-${i}`);
    while (!want.every((w) => sub.payloads().includes(w)) && Date.now() < deadline) await sleep(20);
    assert.deepEqual(sub.payloads().filter((p) => p.startsWith('g-')), want, 'the subscriber got every acknowledged message, in order');

    // The refused units did not cost a database connection each
    const opened = (await sessions()) - sessionsBefore;
    t.diagnostic(`broker connections opened during the run: ${opened}`);
    assert.ok(opened <= 1, `the writer opened ${opened} new database connections while refusing ${badCodes.length + 1} units`);
    const stillAlive = await good.publish(`${run}/good`, 'after');
    assert.equal(stillAlive, 0);
  });
});
