// [MQTT-4.6.0-6] order to persistent subscribers under load, on PostgreSQL. A persistent session's
// QoS 1/2 deliveries take three paths: sent at routing while their unit commits (QoS 1, room in
// the window), sent after their commit (QoS 2 reserved at routing), or queued and sent from the
// queue after a second commit (window full). A message must never overtake an earlier one on the
// way between them. Small windows and pipelining publishers make the broker switch paths all the
// time; raw peers acknowledge at once and record the exact arrival order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const PER_PUBLISHER = 300;
/** PUBLISHes each publisher keeps unacknowledged, and sends per 20 ms tick. */
const PUBLISHER_WINDOW = 100;
const BURST = 3;
const TOPIC = uniqueId('order').replace(/[^a-zA-Z0-9-]/g, '');

let broker: BrokerProcess & { databaseUrl: string | undefined };
before(async () => {
  broker = await startBroker(['--max-inflight', '8']);
  // Slow down the commits that put queued deliveries in flight (UPDATE of deliveries), so that the
  // window has room again while such deliveries still wait for their commit: the moment a later
  // message could be sent at routing ahead of them.
  const c = new pg.Client({ connectionString: broker.databaseUrl });
  await c.connect();
  await c.query(`CREATE FUNCTION tern_test_slow_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(0.004); RETURN NULL; END $$`);
  await c.query('CREATE TRIGGER tern_test_slow_update AFTER UPDATE ON deliveries FOR EACH STATEMENT EXECUTE FUNCTION tern_test_slow_update()');
  await c.end();
});
after(async () => { await broker?.stop(); });

/** Resolve once `done()` holds, checked after every packet any of `peers` receives; reject after `timeoutMs` with `describe()`. */
function untilPackets(peers: RawPeer[], done: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stops: Array<() => void> = [];
    const finish = (): void => {
      clearTimeout(timer);
      for (const stop of stops) stop();
    };
    const check = (): void => {
      if (!done()) return;
      finish();
      resolve();
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`));
    }, timeoutMs);
    // Registered after the peers' own listeners, so a packet is counted before it is checked
    for (const peer of peers) stops.push(peer.on(check));
    check();
  });
}

/** A persistent subscriber that acknowledges at once and checks per-publisher sequence order. */
class OrderedSubscriber {
  readonly clientId = uniqueId('order-sub');
  readonly next = new Map<string, number>();
  readonly anomalies: string[] = [];
  received = 0;
  peer!: RawPeer;

  constructor(readonly transport: Transport, readonly version: Version, readonly qos: 1 | 2, readonly receiveMaximum: number) {}

  async open(): Promise<void> {
    this.peer = await RawPeer.open(broker, this.transport, this.version, { log: false });
    this.peer.on((p) => this.#onPacket(p));
    const connack = await this.peer.connect({
      clientId: this.clientId, clean: false,
      ...(this.version === 5 ? { properties: { sessionExpiryInterval: 600, receiveMaximum: this.receiveMaximum } } : {}),
    });
    assert.equal(connackCode(connack), 0);
    const suback = this.peer.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    this.peer.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${TOPIC}/#`, qos: this.qos }] });
    await suback;
  }

  #onPacket(p: Packet): void {
    if (p.cmd === 'publish') {
      const pub = p as IPublishPacket;
      const [stream, seqText] = Buffer.from(pub.payload).toString().split(':') as [string, string];
      const seq = Number(seqText);
      const want = this.next.get(stream) ?? 0;
      if (seq !== want && this.anomalies.length < 10) this.anomalies.push(`${stream}: got ${seq}, expected ${want}`);
      this.next.set(stream, Math.max(want, seq + 1));
      this.received++;
      if (pub.qos === 1) this.peer.sendPacket({ cmd: 'puback', messageId: pub.messageId!, reasonCode: 0 });
      else if (pub.qos === 2) this.peer.sendPacket({ cmd: 'pubrec', messageId: pub.messageId!, reasonCode: 0 });
    } else if (p.cmd === 'pubrel') {
      this.peer.sendPacket({ cmd: 'pubcomp', messageId: p.messageId!, reasonCode: 0 });
    }
  }
}

/** Streams `stream:0..n-1` at one QoS in bursts, keeping at most PUBLISHER_WINDOW messages unacknowledged. */
async function publishAll(transport: Transport, version: Version, stream: string, qos: 1 | 2): Promise<void> {
  const peer = await RawPeer.open(broker, transport, version, { log: false });
  assert.equal(connackCode(await peer.connect({ clientId: uniqueId(`order-pub-${stream}`), clean: true })), 0);
  let sent = 0;
  let done = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${stream}: ${done}/${PER_PUBLISHER} acknowledged after 60 s`)), 60_000);
    // Bursts on a timer: queues build up and drain again all the time, so deliveries keep
    // switching between the paths (a steady flood would keep them queued)
    const ticker = setInterval(() => {
      for (let i = 0; i < BURST && sent < PER_PUBLISHER && sent - done < PUBLISHER_WINDOW; i++) {
        sent++;
        peer.sendPacket({ cmd: 'publish', topic: `${TOPIC}/${stream}`, payload: Buffer.from(`${stream}:${sent - 1}`), qos, messageId: sent, retain: false, dup: false });
      }
    }, 20);
    peer.on((p) => {
      if (p.cmd === 'pubrec') peer.sendPacket({ cmd: 'pubrel', messageId: p.messageId!, reasonCode: 0 });
      if (p.cmd !== 'puback' && p.cmd !== 'pubcomp') return;
      done++;
      if (done === PER_PUBLISHER) {
        clearTimeout(timer);
        clearInterval(ticker);
        resolve();
      }
    });
  });
  peer.destroy();
}

describe('order to persistent subscribers while deliveries switch between sent-at-routing, sent-after-commit and queued', () => {
  test('every subscriber gets each publisher\'s messages in order, none lost', async (t) => {
    const subs = [
      new OrderedSubscriber('ws', 5, 1, 6), new OrderedSubscriber('tcp', 4, 1, 8),
      new OrderedSubscriber('ws', 4, 2, 8), new OrderedSubscriber('tcp', 5, 2, 6),
    ];
    for (const s of subs) await s.open();
    const t0 = Date.now();
    // QoS 1 and QoS 2 streams interleave on every subscriber: a QoS 1 delivery sent at routing must
    // not pass a QoS 2 one reserved before it, nor one waiting in the queue
    await Promise.all([
      publishAll('ws', 4, 'a', 1), publishAll('tcp', 5, 'b', 1), publishAll('ws', 5, 'c', 2), publishAll('tcp', 4, 'd', 1),
    ]);
    const total = 4 * PER_PUBLISHER;
    await untilPackets(subs.map((s) => s.peer), () => subs.every((s) => s.received >= total), 30_000,
      () => subs.map((s) => `${s.transport} v${s.version} QoS ${s.qos}: ${s.received}/${total}`).join('; '));
    t.diagnostic(`${total} messages to ${subs.length} subscribers in ${Date.now() - t0} ms`);
    for (const s of subs) {
      assert.deepEqual(s.anomalies, [], `${s.transport} v${s.version} QoS ${s.qos}: out of order`);
      assert.equal(s.received, total, `${s.transport} v${s.version} QoS ${s.qos}: received`);
    }
    for (const s of subs) s.peer.destroy();
  });
});

describe('a publisher that goes away while its message is being stored', () => {
  test('the stored message still reaches every subscriber (clean and persistent)', async () => {
    const topic = `${TOPIC}-gone/x`;
    const c = new pg.Client({ connectionString: broker.databaseUrl });
    await c.connect();
    // Hold storing the message until the publisher's connection is gone: the commit waits for an
    // advisory lock that this test holds until then
    const LOCK = 731_842_002;
    await c.query(`CREATE FUNCTION tern_test_slow_message() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock_shared(${LOCK}); RETURN NULL; END $$`);
    // (on deliveries: a message with one persistent receiver is stored inside that delivery's row)
    await c.query('CREATE TRIGGER tern_test_slow_message AFTER INSERT ON deliveries FOR EACH STATEMENT EXECUTE FUNCTION tern_test_slow_message()');
    await c.query(`SELECT pg_advisory_lock(${LOCK})`);
    let locked = true;
    try {
      const got: Record<string, string[]> = { clean: [], persistent: [] };
      const subscribe = async (name: 'clean' | 'persistent', transport: Transport, version: Version): Promise<RawPeer> => {
        const peer = await RawPeer.open(broker, transport, version, { log: false });
        peer.on((pk) => {
          if (pk.cmd === 'pubrel') peer.sendPacket({ cmd: 'pubcomp', messageId: pk.messageId!, reasonCode: 0 });
          if (pk.cmd !== 'publish') return;
          const pub = pk as IPublishPacket;
          got[name]!.push(Buffer.from(pub.payload).toString());
          if (pub.qos === 1) peer.sendPacket({ cmd: 'puback', messageId: pub.messageId!, reasonCode: 0 });
          if (pub.qos === 2) peer.sendPacket({ cmd: 'pubrec', messageId: pub.messageId!, reasonCode: 0 });
        });
        const persistent = name === 'persistent';
        assert.equal(connackCode(await peer.connect({
          clientId: uniqueId(`gone-${name}`), clean: !persistent,
          ...(persistent && version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
        })), 0);
        const suback = peer.waitFor((pk) => pk.cmd === 'suback', 'SUBACK');
        peer.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: persistent ? 2 : 1 }] });
        await suback;
        return peer;
      };
      // QoS 2 to the persistent subscriber: its delivery is stored (not sent ahead), so the commit is slow
      const clean = await subscribe('clean', 'tcp', 4);
      const persistent = await subscribe('persistent', 'ws', 5);
      const pub = await RawPeer.open(broker, 'tcp', 4, { log: false });
      assert.equal(connackCode(await pub.connect({ clientId: uniqueId('gone-pub'), clean: true })), 0);
      pub.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('stored'), qos: 2, messageId: 1, retain: false, dup: false });
      // PostgreSQL has no event for "a backend waits for a lock": ask pg_locks, paced, bounded
      const waitDeadline = Date.now() + 10_000;
      const waiting = `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ${LOCK}`;
      while ((await c.query(waiting)).rows.length === 0) {
        if (Date.now() > waitDeadline) throw new Error('the message commit did not reach the held lock within 10 s');
        await new Promise((r) => setTimeout(r, 10));
      }
      pub.destroy(); // gone while the commit is held
      await pub.closed();
      await c.query(`SELECT pg_advisory_unlock(${LOCK})`);
      locked = false;
      await untilPackets([clean, persistent], () => got['clean']!.length > 0 && got['persistent']!.length > 0, 10_000, () => JSON.stringify(got));
      // Anything sent twice would have come before a later message on the same subscriptions
      const pub2 = await RawPeer.open(broker, 'tcp', 5, { log: false });
      assert.equal(connackCode(await pub2.connect({ clientId: uniqueId('gone-pub2'), clean: true })), 0);
      const acked = pub2.waitFor((pk) => pk.cmd === 'pubrec', 'PUBREC');
      pub2.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('after'), qos: 2, messageId: 1, retain: false, dup: false });
      await acked;
      pub2.destroy();
      await untilPackets([clean, persistent], () => got['clean']!.includes('after') && got['persistent']!.includes('after'), 10_000, () => JSON.stringify(got));
      assert.deepEqual(got, { clean: ['stored', 'after'], persistent: ['stored', 'after'] });
      clean.destroy();
      persistent.destroy();
    } finally {
      if (locked) await c.query(`SELECT pg_advisory_unlock(${LOCK})`).catch(() => undefined);
      await c.query('DROP TRIGGER IF EXISTS tern_test_slow_message ON deliveries').catch(() => undefined);
      await c.end();
    }
  });
});

describe('a QoS 1 message too large for a persistent subscriber', () => {
  test('is discarded for it [MQTT-3.1.2-25] and leaves no delivery row behind', async () => {
    const topic = `${TOPIC}-big/x`;
    const clientId = uniqueId('big-sub');
    const sub = await RawPeer.open(broker, 'ws', 5, { log: false });
    const got: number[] = [];
    sub.on((pk) => {
      if (pk.cmd !== 'publish') return;
      got.push((pk as IPublishPacket).payload.length);
      sub.sendPacket({ cmd: 'puback', messageId: (pk as IPublishPacket).messageId!, reasonCode: 0 });
    });
    assert.equal(connackCode(await sub.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 600, maximumPacketSize: 200 } })), 0);
    const suback = sub.waitFor((pk) => pk.cmd === 'suback', 'SUBACK');
    sub.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;
    const pub = await RawPeer.open(broker, 'tcp', 4, { log: false });
    assert.equal(connackCode(await pub.connect({ clientId: uniqueId('big-pub'), clean: true })), 0);
    const acked = pub.waitFor((pk) => pk.cmd === 'puback', 'PUBACK');
    pub.sendPacket({ cmd: 'publish', topic, payload: Buffer.alloc(500, 1), qos: 1, messageId: 1, retain: false, dup: false });
    await acked;
    const smallAcked = pub.waitFor((pk) => pk.cmd === 'puback', 'PUBACK');
    pub.sendPacket({ cmd: 'publish', topic, payload: Buffer.alloc(10, 2), qos: 1, messageId: 2, retain: false, dup: false });
    await smallAcked;
    await untilPackets([sub], () => got.length > 0, 5000, () => 'no message reached the subscriber');
    // Barrier on the subscriber's own connection: a retained QoS 1 message is acknowledged after its
    // commit, and the broker read the subscriber's PUBACK before it, so every change that PUBACK and
    // the discard queued in the in-order writer is committed by then
    const barrierAcked = sub.waitFor((pk) => pk.cmd === 'puback' && pk.messageId === 7, 'PUBACK of the barrier');
    sub.sendPacket({ cmd: 'publish', topic: `${topic}-barrier`, payload: Buffer.from('b'), qos: 1, messageId: 7, retain: true, dup: false });
    await barrierAcked;
    assert.deepEqual(got, [10], 'only the message that fits arrives');
    const c = new pg.Client({ connectionString: broker.databaseUrl });
    await c.connect();
    try {
      const rows = Number((await c.query('SELECT count(*) AS n FROM deliveries WHERE client_id = $1', [clientId])).rows[0].n);
      assert.equal(rows, 0, 'no delivery row left for the subscriber');
    } finally {
      await c.end();
      pub.destroy();
      sub.destroy();
    }
  });
});
