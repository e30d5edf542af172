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
import { connackCode, MqttPeer } from '../helpers/mqtt-peer.ts';

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

/** A persistent subscriber that acknowledges at once and checks per-publisher sequence order. */
class OrderedSubscriber {
  readonly clientId = uniqueId('order-sub');
  readonly next = new Map<string, number>();
  readonly anomalies: string[] = [];
  received = 0;
  peer!: MqttPeer;

  constructor(readonly transport: Transport, readonly version: Version, readonly qos: 1 | 2, readonly receiveMaximum: number) {}

  async open(): Promise<void> {
    this.peer = await MqttPeer.open(broker, this.transport, this.version);
    this.peer.on((p) => this.#onPacket(p));
    const connack = await this.peer.connect({
      clientId: this.clientId, clean: false,
      ...(this.version === 5 ? { properties: { sessionExpiryInterval: 600, receiveMaximum: this.receiveMaximum } } : {}),
    });
    assert.equal(connackCode(connack), 0);
    const suback = this.peer.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    this.peer.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${TOPIC}/#`, qos: this.qos }] });
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
      if (pub.qos === 1) this.peer.send({ cmd: 'puback', messageId: pub.messageId!, reasonCode: 0 });
      else if (pub.qos === 2) this.peer.send({ cmd: 'pubrec', messageId: pub.messageId!, reasonCode: 0 });
    } else if (p.cmd === 'pubrel') {
      this.peer.send({ cmd: 'pubcomp', messageId: p.messageId!, reasonCode: 0 });
    }
  }
}

/** Streams `stream:0..n-1` at one QoS in bursts, keeping at most PUBLISHER_WINDOW messages unacknowledged. */
async function publishAll(transport: Transport, version: Version, stream: string, qos: 1 | 2): Promise<void> {
  const peer = await MqttPeer.open(broker, transport, version);
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
        peer.send({ cmd: 'publish', topic: `${TOPIC}/${stream}`, payload: Buffer.from(`${stream}:${sent - 1}`), qos, messageId: sent, retain: false, dup: false });
      }
    }, 20);
    peer.on((p) => {
      if (p.cmd === 'pubrec') peer.send({ cmd: 'pubrel', messageId: p.messageId!, reasonCode: 0 });
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
    const deadline = Date.now() + 30_000;
    while (subs.some((s) => s.received < total) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.diagnostic(`${total} messages to ${subs.length} subscribers in ${Date.now() - t0} ms`);
    for (const s of subs) {
      assert.deepEqual(s.anomalies, [], `${s.transport} v${s.version} QoS ${s.qos}: out of order`);
      assert.equal(s.received, total, `${s.transport} v${s.version} QoS ${s.qos}: received`);
    }
    for (const s of subs) s.peer.destroy();
  });
});
