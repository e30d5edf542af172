// PostgreSQL outage (DESIGN.md §3): the broker runs on a PostgreSQL server of this test's own, which
// is stopped and started again under it. While it is down, clean sessions and QoS 0 keep working
// ("never wait on Postgres"), nothing that needs a commit is acknowledged as a success (5.0: reason
// code >= 0x80; 3.1.1: the PUBACK is held until the message is stored; persistent CONNECT refused), and once it is back
// the same broker process resumes by itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { IConnackPacket, IPublishPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { OwnPostgres } from '../helpers/own-postgres.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const run = uniqueId('outage').replace(/[^a-zA-Z0-9-]/g, '');
const PERSISTENT_TOPIC = `outage/${run}/persistent`;
const CLEAN_TOPIC = `outage/${run}/clean`;
const REFUSED_TOPIC = `outage/${run}/refused-subscription`;

/** A raw client that records PUBLISHes (acknowledging QoS 1 at once) and every other packet. */
class Client {
  peer!: RawPeer;
  readonly received: IPublishPacket[] = [];
  readonly packets: Packet[] = [];
  #nextId = 1;

  constructor(readonly name: string, readonly transport: Transport, readonly version: Version, readonly clientId = uniqueId(name)) {}

  async connect(broker: BrokerProcess, persistent: boolean): Promise<IConnackPacket> {
    this.peer = await RawPeer.open(broker, this.transport, this.version);
    this.peer.on((p) => {
      this.packets.push(p);
      if (p.cmd !== 'publish') return;
      this.received.push(p);
      if (p.qos === 1) this.peer.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
    });
    return this.peer.connect({
      clientId: this.clientId, clean: !persistent,
      ...(persistent && this.version === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    });
  }

  /** SUBSCRIBE; resolves with the granted QoS / reason codes of the SUBACK. */
  async subscribe(topic: string, qos: 0 | 1): Promise<number[]> {
    const messageId = this.#nextId++;
    const suback = this.peer.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, `${this.name} SUBACK`);
    this.peer.sendPacket({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
    return ((await suback) as Extract<Packet, { cmd: 'suback' }>).granted as number[];
  }

  /** Publish; for QoS 1/2 resolve with the PUBACK/PUBREC reason code (rejects if none comes within `timeoutMs`). */
  async publish(topic: string, payload: string, qos: 0 | 1 | 2, timeoutMs = 10_000): Promise<number | undefined> {
    return this.publishWith(topic, payload, qos, undefined, timeoutMs);
  }

  /** `publish` with 5.0 PUBLISH properties. */
  async publishWith(topic: string, payload: string, qos: 0 | 1 | 2, properties: IPublishPacket['properties'], timeoutMs = 10_000): Promise<number | undefined> {
    if (qos === 0) {
      this.peer.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, properties });
      return undefined;
    }
    const messageId = this.#nextId++;
    const cmd = qos === 1 ? 'puback' : 'pubrec';
    const ack = this.peer.waitFor((p) => p.cmd === cmd && p.messageId === messageId, `${this.name} ${cmd} for ${payload}`, timeoutMs);
    this.peer.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, messageId, properties });
    const p = (await ack) as Extract<Packet, { cmd: 'puback' | 'pubrec' }>;
    const rc = p.reasonCode ?? 0;
    if (qos === 2 && rc < 0x80) this.peer.sendPacket({ cmd: 'pubrel', messageId, reasonCode: 0 });
    return rc;
  }

  payloads(): string[] {
    return this.received.map((p) => Buffer.from(p.payload).toString());
  }

  async until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`${this.name}: timed out waiting for ${what}; received ${JSON.stringify(this.payloads())}`);
      await sleep(10);
    }
  }
}

describe('PostgreSQL outage', { concurrency: false }, () => {
  const pg = new OwnPostgres();
  let broker: BrokerProcess;
  const clients: Client[] = [];
  const client = (name: string, transport: Transport, version: Version, clientId?: string): Client => {
    const c = new Client(name, transport, version, clientId);
    clients.push(c);
    return c;
  };
  // Persistent subscribers (one per protocol version, over both transports), clean publishers and QoS 0 pair
  const sub5 = client('persistent-sub-v5', 'tcp', 5);
  const sub4 = client('persistent-sub-v4', 'ws', 4);
  const pub5 = client('pub-v5', 'tcp', 5);
  const pub4 = client('pub-v4', 'tcp', 4);
  const cleanSub = client('clean-sub-v4', 'tcp', 4);
  const cleanPub = client('clean-pub-v5', 'ws', 5);
  const refusedId = uniqueId('refused-during-outage');
  let outageStartedMs = 0;
  /**
   * While PostgreSQL is down its port is held by a listener that refuses each connection at once and
   * counts it: every commit attempt of the broker is then an event the test can wait for.
   */
  let standIn: net.Server | undefined;
  let attempts = 0;
  const attemptWaiters = new Set<() => void>();
  const startStandIn = async (): Promise<void> => {
    standIn = net.createServer((sock) => {
      attempts++;
      sock.destroy();
      for (const w of [...attemptWaiters]) w();
    });
    await new Promise<void>((resolve, reject) => standIn!.once('error', reject).listen(pg.port, '127.0.0.1', resolve));
  };
  const stopStandIn = async (): Promise<void> => {
    if (!standIn) return;
    const s = standIn;
    standIn = undefined;
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  /** Resolve once the broker has tried to reach PostgreSQL `n` more times; reject after `timeoutMs`. */
  const moreAttempts = (n: number, timeoutMs: number): Promise<void> => new Promise((resolve, reject) => {
    const target = attempts + n;
    const check = (): void => {
      if (attempts < target) return;
      clearTimeout(timer);
      attemptWaiters.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      attemptWaiters.delete(check);
      reject(new Error(`the broker tried PostgreSQL ${attempts - target + n} of ${n} more times within ${timeoutMs} ms`));
    }, timeoutMs);
    attemptWaiters.add(check);
  });
  let heldV4: Promise<number | undefined> | undefined;
  before(async () => {
    const databaseUrl = await pg.create('tern_outage');
    broker = await startBroker([], {}, { databaseUrl });

    for (const [c, persistent] of [[sub5, true], [sub4, true], [pub5, false], [pub4, false], [cleanSub, false], [cleanPub, false]] as const) {
      const connack = await c.connect(broker, persistent);
      assert.equal(connackCode(connack), 0, `${c.name} connected`);
    }
    assert.deepEqual(await sub5.subscribe(PERSISTENT_TOPIC, 1), [1]);
    assert.deepEqual(await sub4.subscribe(PERSISTENT_TOPIC, 1), [1]);
    assert.deepEqual(await cleanSub.subscribe(CLEAN_TOPIC, 1), [1]);
  }, { timeout: 50_000 });

  after(async () => {
    await stopStandIn();
    for (const c of clients) c.peer?.destroy();
    await broker?.stop();
    await pg.dispose();
  });

  test('before the outage: a QoS 1 publish to the persistent subscribers is acknowledged and delivered', async () => {
    assert.equal(await pub5.publish(PERSISTENT_TOPIC, 'before', 1), 0);
    await sub5.until(() => sub5.payloads().includes('before'), '"before"');
    await sub4.until(() => sub4.payloads().includes('before'), '"before"');
  });

  test('while PostgreSQL is down, clean sessions keep working: QoS 0 flows, QoS 1 to a clean subscriber is acknowledged, a new clean session connects', async (t) => {
    await pg.stop();
    await startStandIn();
    outageStartedMs = Date.now();
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) await cleanPub.publish(CLEAN_TOPIC, `q0-${i}`, 0);
    await cleanSub.until(() => cleanSub.received.length >= 50, '50 QoS 0 messages', 5000);
    assert.deepEqual(cleanSub.payloads(), Array.from({ length: 50 }, (_, i) => `q0-${i}`));
    t.diagnostic(`50 QoS 0 messages delivered ${Date.now() - t0} ms into the outage`);

    // QoS 1 to a subscriber without a persistent session stores nothing, so it needs no commit either
    assert.equal(await cleanPub.publish(CLEAN_TOPIC, 'q1-clean', 1, 5000), 0, 'PUBACK success for a QoS 1 message to a clean session');
    await cleanSub.until(() => cleanSub.payloads().includes('q1-clean'), '"q1-clean"');

    const fresh = client('fresh-clean-v5', 'ws', 5);
    const connack = await fresh.connect(broker, false);
    assert.equal(connackCode(connack), 0, 'a clean session connects during the outage');
    assert.deepEqual(await fresh.subscribe(CLEAN_TOPIC, 0), [0]);
    await cleanPub.publish(CLEAN_TOPIC, 'to-fresh', 0);
    await fresh.until(() => fresh.payloads().includes('to-fresh'), '"to-fresh"');
  });

  test('while PostgreSQL is down, 5.0: a QoS 1/2 publish to persistent subscribers gets 0x83 at once, not success', async (t) => {
    const t0 = Date.now();
    const rc1 = await pub5.publish(PERSISTENT_TOPIC, 'during-q1', 1);
    t.diagnostic(`PUBACK 0x${rc1!.toString(16)} after ${Date.now() - t0} ms`);
    assert.equal(rc1, 0x83, `PUBACK reason code 0x${rc1!.toString(16)}: README promises 0x83 Implementation specific error`);
    const rc2 = await pub5.publish(PERSISTENT_TOPIC, 'during-q2', 2);
    assert.equal(rc2, 0x83, `PUBREC reason code 0x${rc2!.toString(16)}: README promises 0x83 Implementation specific error`);
    assert.ok(!pub5.peer.isClosed, 'the 5.0 publisher stays connected');
  });

  test('while PostgreSQL is down, 3.1.1: a QoS 1 publish to persistent subscribers is not acknowledged; the PUBACK is held while a 5.0 failure is answered at once', async () => {
    heldV4 = pub4.publish(PERSISTENT_TOPIC, 'during-v4', 1, 60_000);
    heldV4.catch(() => undefined); // awaited in the recovery test
    // A 5.0 publish sent after it is answered 0x83 without waiting for PostgreSQL, while the 3.1.1
    // PUBACK stays held; the hold is checked again just before PostgreSQL comes back (recovery
    // test), so it is observed across the whole outage, bounded by events rather than a sleep.
    assert.equal(await pub5.publish(PERSISTENT_TOPIC, 'after-held-v4', 1), 0x83, 'a 5.0 publish after the held 3.1.1 one fails at once');
    // The broker keeps retrying the held unit (0.25 s, then doubling): let it try three more times
    await moreAttempts(3, 15_000);    assert.deepEqual(pub4.packets.filter((p) => p.cmd === 'puback'), [], 'no PUBACK while the message cannot be stored');
    assert.ok(!pub4.peer.isClosed, 'the 3.1.1 publisher stays connected while its acknowledgement is held');
  });

  test('while PostgreSQL is down, a persistent session cannot be created (CONNACK Server unavailable)', async () => {
    const c5 = client('persistent-during-v5', 'tcp', 5, refusedId);
    const connack5 = await c5.connect(broker, true);
    assert.equal(connackCode(connack5), 0x88, '5.0 CONNACK 0x88 Server unavailable');
    assert.equal(connack5.sessionPresent, false);
    await c5.peer.closed();
    const c4 = client('persistent-during-v4', 'ws', 4);
    const connack4 = await c4.connect(broker, true);
    assert.equal(connackCode(connack4), 3, '3.1.1 CONNACK 3 Server unavailable');
    await c4.peer.closed();
  });

  test('while PostgreSQL is down, 5.0: a persistent session\'s SUBSCRIBE gets a failure reason code', async () => {
    const granted = await sub5.subscribe(REFUSED_TOPIC, 1);
    assert.equal(granted.length, 1);
    assert.ok(granted[0]! >= 0x80, `SUBACK 0x${granted[0]!.toString(16)} must be a failure`);
  });

  test('after PostgreSQL is back, the same broker process resumes: QoS 1 to persistent subscribers is acknowledged and delivered', async (t) => {
    // The 3.1.1 acknowledgement was held for the whole outage: no PUBACK and no close until now
    assert.deepEqual(pub4.packets.filter((p) => p.cmd === 'puback'), [], 'no PUBACK for the 3.1.1 publish at any time during the outage');
    assert.ok(!pub4.peer.isClosed, 'the 3.1.1 publisher stayed connected through the outage');
    t.diagnostic(`the broker tried to reach PostgreSQL ${attempts} times during the outage`);
    await stopStandIn();
    await pg.start();
    t.diagnostic(`PostgreSQL was down for ${Date.now() - outageStartedMs} ms`);
    // The first publish after the restart may meet a pooled connection that has not noticed the restart yet: allow a few tries
    const t0 = Date.now();
    const codes: number[] = [];
    let rc: number | undefined;
    while (rc === undefined || rc >= 0x80) {
      if (Date.now() - t0 > 15_000) break;
      rc = await pub5.publish(PERSISTENT_TOPIC, `after-${codes.length}`, 1);
      codes.push(rc!);
      if (rc! >= 0x80) await sleep(250);
    }
    t.diagnostic(`reason codes of the publishes after PostgreSQL came back: ${codes.map((c) => `0x${c.toString(16)}`).join(', ')} (${Date.now() - t0} ms)`);
    assert.equal(rc, 0, 'a QoS 1 publish is acknowledged with success within 15 s');
    const ok = `after-${codes.length - 1}`;
    for (const s of [sub5, sub4]) {
      assert.ok(!s.peer.isClosed, `${s.name} is still connected`);
      await s.until(() => s.payloads().includes(ok), `"${ok}"`);
    }
    // and it keeps working, in order
    for (let i = 0; i < 5; i++) assert.equal(await pub5.publish(PERSISTENT_TOPIC, `more-${i}`, 1), 0);
    const more = Array.from({ length: 5 }, (_, i) => `more-${i}`);
    // The 3.1.1 publish held during the outage is stored and acknowledged once PostgreSQL is back
    assert.equal(await heldV4, 0, 'the held PUBACK arrives after the outage');
    for (const s of [sub5, sub4]) {
      await s.until(() => more.every((m) => s.payloads().includes(m)) && s.payloads().includes('during-v4'), 'more-0..4 and during-v4');
      // Nothing the broker refused reached them; what was acknowledged arrived once, in order
      const fromPub5 = s.payloads().filter((x) => x !== 'during-v4');
      assert.deepEqual(fromPub5, ['before', ...codes.map((c, i) => (c === 0 ? `after-${i}` : undefined)).filter((x) => x !== undefined), ...more], s.name);
      assert.equal(s.payloads().filter((x) => x === 'during-v4').length, 1, `${s.name} got the held 3.1.1 message once`);
    }
    // A 3.1.1 publisher reconnects and is acknowledged again
    const again = client('pub-v4-again', 'tcp', 4);
    assert.equal(connackCode(await again.connect(broker, false)), 0);
    assert.equal(await again.publish(PERSISTENT_TOPIC, 'v4-after', 1), 0);
    await sub5.until(() => sub5.payloads().includes('v4-after'), '"v4-after"');
  });

  test('after PostgreSQL is back, a subscription refused during the outage does not exist', async (t) => {
    // It was refused (SUBACK failure) and never stored; had the broker kept it in memory, this message
    // would be delivered now and silently lost at the next restart
    const rc = await pub5.publish(REFUSED_TOPIC, 'to-refused-subscription', 1);
    t.diagnostic(`PUBACK 0x${rc!.toString(16)} (0x10: no matching subscribers)`);
    // Barrier: a later message to sub5's real subscription from the same publisher comes after anything routed before it
    assert.equal(await pub5.publish(PERSISTENT_TOPIC, 'barrier-after-refused', 1), 0);
    await sub5.until(() => sub5.payloads().includes('barrier-after-refused'), '"barrier-after-refused"');
    assert.ok(!sub5.payloads().includes('to-refused-subscription'), 'a message arrived on a subscription whose SUBSCRIBE was refused');
    assert.equal(rc, 0x10, 'PUBACK 0x10 No matching subscribers');
  });

  test('after PostgreSQL is back, a client refused during the outage has no session (session present 0)', async () => {
    const c = client('refused-comes-back', 'tcp', 5, refusedId);
    const connack = await c.connect(broker, true);
    assert.equal(connackCode(connack), 0);
    assert.equal(connack.sessionPresent, false, 'the refused CONNECT must not have left a session behind');
  });
});

// PostgreSQL refusing the rows of one unit of work (here: U+0000 in a user property, which jsonb
// cannot store) fails the commit of the whole group-commit batch. That must cost only the offending
// message, not the acknowledgements of every other client whose units shared the batch (3.1.1 clients
// even lose their connection when a publish cannot be stored).
describe('PostgreSQL refuses one unit of work', { concurrency: false }, () => {
  let broker: BrokerProcess;
  const peers: Client[] = [];
  after(async () => {
    for (const c of peers) c.peer?.destroy();
    await broker?.stop();
  });

  test('the other units of its batch are committed and acknowledged; only the refused message fails', async (t) => {
    broker = await startBroker();
    const topic = `refused/${run}`;
    const sub = new Client('refused-sub', 'tcp', 5);
    const good5 = new Client('good-v5', 'tcp', 5);
    const good4 = new Client('good-v4', 'ws', 4);
    const bad = new Client('bad-v5', 'tcp', 5);
    peers.push(sub, good5, good4, bad);
    assert.equal(connackCode(await sub.connect(broker, true)), 0);
    assert.deepEqual(await sub.subscribe(`${topic}/#`, 1), [1]);
    for (const c of [good5, good4, bad]) assert.equal(connackCode(await c.connect(broker, false)), 0);

    // Paced, so that commits are in flight while units keep arriving; a refused message every 20
    const n = 200;
    const settle = (p: Promise<number | undefined>): Promise<number | string | undefined> =>
      p.catch((e: Error) => (/connection closed/.test(e.message) ? 'connection closed' : e.message));
    const acks: Record<string, Array<Promise<number | string | undefined>>> = { good5: [], good4: [] };
    const badAcks: Array<Promise<number | string | undefined>> = [];
    for (let i = 0; i < n; i++) {
      acks['good5']!.push(settle(good5.publish(`${topic}/v5`, `v5-${i}`, 1)));
      acks['good4']!.push(settle(good4.publish(`${topic}/v4`, `v4-${i}`, 1)));
      if (i % 20 === 10) {
        const props = { userProperties: { k: 'x\u0000y' } };
        badAcks.push(settle(bad.publishWith(`${topic}/bad`, `bad-${i}`, 1, props)));
      }
      if (i % 10 === 9) await sleep(2);
    }
    const codes5 = await Promise.all(acks['good5']!);
    const codes4 = await Promise.all(acks['good4']!);
    const badCodes = await Promise.all(badAcks);
    const count = (xs: Array<number | string | undefined>): Record<string, number> =>
      xs.reduce<Record<string, number>>((m, x) => { m[String(x)] = (m[String(x)] ?? 0) + 1; return m; }, {});
    t.diagnostic(`good 5.0 publisher: ${JSON.stringify(count(codes5))}; good 3.1.1 publisher: ${JSON.stringify(count(codes4))}; refused messages: ${JSON.stringify(count(badCodes))}`);
    assert.deepEqual(count(codes5), { 0: n }, 'every 5.0 publish acknowledged with success');
    assert.deepEqual(count(codes4), { 0: n }, 'every 3.1.1 publish acknowledged');
    assert.ok(badCodes.every((c) => typeof c !== 'number' || c >= 0x80), 'a message that could not be stored is not acknowledged with success');
    const want = [...Array.from({ length: n }, (_, i) => `v5-${i}`), ...Array.from({ length: n }, (_, i) => `v4-${i}`)].sort();
    await sub.until(() => sub.received.length >= 2 * n, `${2 * n} messages`);
    // Barrier: a duplicate or a refused message would arrive before a later message from the same publishers
    assert.equal(await good5.publish(`${topic}/v5`, 'barrier', 1), 0);
    assert.equal(await good4.publish(`${topic}/v4`, 'barrier', 1), 0);
    await sub.until(() => sub.payloads().filter((x) => x === 'barrier').length === 2, 'the two barrier messages');
    sub.received.splice(sub.received.findIndex((p) => Buffer.from(p.payload).toString() === 'barrier'), 1);
    sub.received.splice(sub.received.findIndex((p) => Buffer.from(p.payload).toString() === 'barrier'), 1);
    assert.deepEqual(sub.payloads().sort(), want, 'the subscriber got every acknowledged message once, and not the refused one');
  });
});
