// kill -9 under load (DESIGN.md §3): persistent subscribers (connected and offline, MQTT 3.1.1
// clean session 0 and MQTT 5 Session Expiry Interval 3600, over TCP and WebSocket, at QoS 1 and 2)
// while QoS 1 publishers (clean sessions) and QoS 2 publishers (persistent sessions) stream messages.
// Once about a third of the acknowledgements arrived, the broker is killed in the middle of a COMMIT
// (see killDuringCommit) and restarted on the same database; the QoS 2 publishers resume their
// sessions and finish their flows (PUBLISH again with DUP where no PUBREC came, PUBREL otherwise).
// Then: every acknowledged message was stored and reaches every persistent subscriber; no QoS 2
// message is delivered twice; QoS 1 comes again only where the subscriber's PUBACK may not have been
// stored, with DUP 1 and its original packet id; sessions resume with session present 1 and QoS 2
// flows complete with PUBREL; the retained message and the wills of the crashed sessions are back.
//
// The load subscribers and publishers are raw peers (test/helpers/raw-peer.ts), so that the test
// knows exactly what it acknowledged and when. "Surely acknowledged" before the crash: the broker
// keeps at most WINDOW QoS 1/2 deliveries in flight per session (--max-inflight); a slot is freed by a
// PUBACK or PUBCOMP, whose deletion of the delivery row goes to the in-order group-commit writer
// before the unit of work that takes the slot again (routing or queue pump). So when a subscriber
// had received r PUBLISHes as it sent the completion of X, the PUBLISHes from number r + WINDOW on
// took their slots after the broker had read it; a QoS 2 one among them left only after its unit
// committed, which proves X's completion is stored. Those messages must not come again.
//
// QoS 1 may leave before its unit commits (at least once allows it; the rows of a delivery
// acknowledged within the same group commit are never written). So after the restart a QoS 1
// message can come again either resumed (DUP 1, original packet id: its in-flight state was
// stored) or as a new delivery (DUP 0): its publisher got no PUBACK and sent it again, or its
// in-flight state was not stored yet and it is delivered from the queue once more.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { MqttClient } from 'mqtt';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, startClient, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { Inbox } from '../helpers/inbox.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer, type PeerTarget } from '../helpers/raw-peer.ts';

/** Outbound QoS 1/2 window per session (broker --max-inflight and the 5.0 subscribers' Receive Maximum). */
const WINDOW = 32;
const BROKER_ARGS = ['--max-inflight', String(WINDOW)];
/** Messages each publisher sends, and how many it keeps unacknowledged at once. */
const PER_PUBLISHER = 450;
const PUBLISHER_WINDOW = 200;
/** Publishers stream at a steady pace (BURST messages per 2 ms tick), so the kill lands amid commits, not between lockstep batches. */
const BURST = 1;
const EXPIRY = 3600;

const run = uniqueId('crash').replace(/[^a-zA-Z0-9-]/g, '');
const LOAD = `crash/${run}`;
const RETAINED = `crash-r/${run}`;
const WILLS = `crash-w/${run}`;

/** Emits 'change' after every packet a load peer receives and every MQTT.js client close. */
const progress = new EventEmitter();
progress.setMaxListeners(0);

/**
 * Resolve once `done()` holds, or reject after `timeoutMs` with `describe()`. Checked after the
 * 'change' events of `progress`, at most once per event-loop turn (a turn brings many packets).
 */
function until(done: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let scheduled = false;
    let settled = false;
    const check = (): void => {
      scheduled = false;
      if (settled || !done()) return;
      settled = true;
      clearTimeout(timer);
      progress.off('change', onChange);
      resolve();
    };
    const onChange = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(check);
    };
    const timer = setTimeout(() => {
      settled = true;
      progress.off('change', onChange);
      reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`));
    }, timeoutMs);
    progress.on('change', onChange);
    check();
  });
}

/** The whole set-up (before hook) must end within this, inside the runner's 60 s per file (scripts/run-tests.mjs); every wait inside it takes its limit from what is left. */
const SETUP_TIMEOUT = 52_000;

function persistentConnect(version: Version, clientId: string, extra: Record<string, unknown> = {}): { clientId: string; clean: false; properties?: Record<string, number> } {
  return { clientId, clean: false, ...(version === 5 ? { properties: { sessionExpiryInterval: EXPIRY, ...extra } } : {}) };
}

/**
 * SIGKILL the broker while PostgreSQL is applying one of its COMMITs. A deferred constraint trigger
 * (installed now, removed before returning) makes every COMMIT that stores messages sleep; one such
 * COMMIT is let through (the next batch grows meanwhile), and once the broker's backend is seen
 * sleeping in the following one, the broker is frozen (SIGSTOP), the COMMIT is left to finish, then
 * the broker gets SIGKILL. So the batch is durable while none of its acknowledgements,
 * nor anything that waited for it, ever left the broker: the "stored, not acknowledged" crash window,
 * which a plain kill at a random moment rarely hits (a COMMIT takes well under a millisecond here).
 */
async function killDuringCommit(broker: BrokerProcess, url: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    // Each slow COMMIT holds a shared advisory lock until it ends: taking it exclusively waits for exactly that end
    await c.query(`CREATE OR REPLACE FUNCTION tern_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF coalesce(current_setting('tern_test.slept', true), '') = '' THEN
          PERFORM set_config('tern_test.slept', '1', true);
          PERFORM pg_advisory_xact_lock_shared(${COMMIT_LOCK});
          PERFORM pg_sleep(0.3);
        END IF;
        RETURN NULL;
      END $$`);
    // (on deliveries: every commit that stores a message inserts a delivery row, which may carry the message itself)
    await c.query(`CREATE CONSTRAINT TRIGGER tern_test_slow_commit AFTER INSERT ON deliveries
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tern_test_slow_commit()`);
    // A commit is an explicit COMMIT, or the single-statement batch (tern_apply_hot) committing on its own
    const COMMITTING = `(query = 'COMMIT' OR query LIKE 'SELECT tern_apply_hot(%')`;
    const inCommit = `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tern'
      AND state = 'active' AND ${COMMITTING} AND wait_event = 'PgSleep'`;
    // PostgreSQL has no event for "a backend started sleeping": ask pg_stat_activity, paced (each COMMIT sleeps 300 ms)
    const sleepingCommit = async (): Promise<number> => {
      for (;;) {
        const rows = (await c.query(inCommit)).rows as Array<{ pid: number }>;
        if (rows.length > 0) return rows[0]!.pid;
        if (left() <= 1) throw new Error(`the broker committed no message within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    /** Resolve once every slow COMMIT running now has ended (bounded by lock_timeout). */
    const finished = async (): Promise<void> => {
      await c.query(`SET lock_timeout = ${Math.min(left(), 10_000)}`);
      await c.query(`SELECT pg_advisory_lock(${COMMIT_LOCK})`);
      await c.query(`SELECT pg_advisory_unlock(${COMMIT_LOCK})`);
    };
    // Let one slow COMMIT pass, so that the next batch grows while it sleeps; freeze during that next one
    await sleepingCommit();
    await finished();
    const pid = await sleepingCommit();
    broker.proc.kill('SIGSTOP');
    const started = Date.now();
    await finished();
    await broker.kill();
    return `frozen during a COMMIT (backend ${pid}), killed after it finished (${Date.now() - started} ms later)`;
  } finally {
    // On every path: a frozen broker would hold its locks, and the DROP below would wait for ever
    await broker.kill();
    await c.query('DROP TRIGGER IF EXISTS tern_test_slow_commit ON deliveries').catch(() => undefined);
    await c.query('DROP FUNCTION IF EXISTS tern_test_slow_commit()').catch(() => undefined);
    await c.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await c.end();
  }
}

/** Advisory lock key that the slow COMMITs of killDuringCommit hold (shared) until they end. */
const COMMIT_LOCK = 731_842_001;

interface Receipt { life: 0 | 1; qos: number; dup: boolean; packetId: number }

/** A persistent load subscriber that acknowledges everything at once and records every packet. */
class Subscriber {
  readonly clientId = uniqueId('crash-sub');
  life: 0 | 1 = 0;
  peer: RawPeer | undefined;
  readonly sessionPresent: boolean[] = [];
  /** Every PUBLISH by payload id, in arrival order. */
  readonly publishes = new Map<string, Receipt[]>();
  /** Application deliveries: every QoS 1 PUBLISH; a QoS 2 message once (on PUBLISH, then its packet id awaits PUBREL). */
  readonly delivered = new Map<string, number>();
  /** QoS 2 packet ids answered with PUBREC whose PUBREL has not come (survives the reconnect, as a client's state must). */
  readonly awaitingRel = new Map<number, string>();
  /** PUBLISH packets received before the crash. */
  receivedBeforeCrash = 0;
  /** PUBACK / PUBCOMP sent before the crash, in order, with the number of PUBLISHes received by then. */
  readonly completions: Array<{ id: string; qos: 1 | 2; received: number }> = [];
  /** Ids and QoS of the PUBLISHes received before the crash, in arrival order. */
  readonly arrivals: Array<{ id: string; qos: number }> = [];
  /** QoS 2 PUBLISHes for a packet id awaiting PUBREL (resends; not deliveries). */
  qos2Resends = 0;
  /** Packet ids of those resends after the restart. */
  readonly resentAfterRestart: number[] = [];
  /** Packet ids awaiting PUBREL when the broker died. */
  awaitingRelAtCrash = new Set<number>();
  /** PUBRELs after the restart for packet ids not awaiting one (our PUBCOMP was not stored). */
  unknownPubrels = 0;
  readonly problems: string[] = [];

  constructor(
    readonly name: string, readonly transport: Transport, readonly version: Version, readonly qos: 1 | 2,
    readonly online: boolean, readonly qosOf: (id: string) => 1 | 2 | undefined,
  ) {}

  async connect(target: PeerTarget): Promise<void> {
    const peer = await RawPeer.open(target, this.transport, this.version, { log: false });
    this.peer = peer;
    peer.on((p) => this.#onPacket(peer, p));
    const connack = await peer.connect(persistentConnect(this.version, this.clientId, { receiveMaximum: WINDOW }));
    assert.equal(connackCode(connack), 0, `${this.name}: CONNACK`);
    this.sessionPresent.push(connack.sessionPresent);
  }

  async subscribe(): Promise<void> {
    const suback = this.peer!.waitFor((p) => p.cmd === 'suback', `${this.name} SUBACK`);
    this.peer!.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${LOAD}/#`, qos: this.qos }] });
    const p = (await suback) as Extract<Packet, { cmd: 'suback' }>;
    assert.deepEqual(p.granted, [this.qos], `${this.name}: granted QoS`);
  }

  /** DISCONNECT normally (the session stays) and wait for the broker to close. */
  async leave(): Promise<void> {
    this.peer!.sendPacket({ cmd: 'disconnect', ...(this.version === 5 ? { reasonCode: 0 } : {}) });
    await this.peer!.closed();
  }

  #onPacket(peer: RawPeer, p: Packet): void {
    this.#handle(peer, p);
    progress.emit('change');
  }

  #handle(peer: RawPeer, p: Packet): void {
    if (p.cmd === 'publish') {
      this.#onPublish(peer, p);
    } else if (p.cmd === 'pubrel') {
      const packetId = p.messageId ?? 0;
      const id = this.awaitingRel.get(packetId);
      if (id === undefined) {
        if (this.life === 0) this.problems.push(`PUBREL for unknown packet id ${packetId} before the crash`);
        else this.unknownPubrels++;
      } else {
        this.awaitingRel.delete(packetId);
      }
      peer.sendPacket({ cmd: 'pubcomp', messageId: packetId, reasonCode: 0 });
      if (this.life === 0 && id !== undefined) this.completions.push({ id, qos: 2, received: this.receivedBeforeCrash });
    } else if (p.cmd === 'disconnect') {
      this.problems.push(`DISCONNECT from the broker (reason 0x${(p.reasonCode ?? 0).toString(16)}) in life ${this.life}`);
    }
  }

  #onPublish(peer: RawPeer, p: IPublishPacket): void {
    const id = Buffer.from(p.payload).toString();
    const pubQos = this.qosOf(id);
    if (pubQos === undefined || !p.topic.startsWith(`${LOAD}/`)) {
      this.problems.push(`unexpected PUBLISH ${p.topic} ${id}`);
    } else if (p.qos !== Math.min(pubQos, this.qos)) {
      this.problems.push(`${id} arrived at QoS ${p.qos}, expected ${Math.min(pubQos, this.qos)}`);
    }
    const packetId = p.messageId ?? 0;
    const list = this.publishes.get(id) ?? [];
    list.push({ life: this.life, qos: p.qos, dup: p.dup, packetId });
    this.publishes.set(id, list);
    if (this.life === 0) {
      this.receivedBeforeCrash++;
      this.arrivals.push({ id, qos: p.qos });
      if (p.dup) this.problems.push(`${id} had DUP 1 before any reconnect`);
    }
    if (p.qos === 1) {
      this.delivered.set(id, (this.delivered.get(id) ?? 0) + 1);
      peer.sendPacket({ cmd: 'puback', messageId: packetId, reasonCode: 0 });
      if (this.life === 0) this.completions.push({ id, qos: 1, received: this.receivedBeforeCrash });
    } else if (p.qos === 2) {
      const awaited = this.awaitingRel.get(packetId);
      if (awaited !== undefined) {
        // A resend of a PUBLISH we already answered with PUBREC (the broker had not stored that PUBREC)
        this.qos2Resends++;
        if (this.life === 1) this.resentAfterRestart.push(packetId);
        if (awaited !== id) this.problems.push(`packet id ${packetId} awaits PUBREL for ${awaited} but carried ${id}`);
        if (!p.dup) this.problems.push(`resent QoS 2 PUBLISH ${id} without DUP`);
      } else {
        this.delivered.set(id, (this.delivered.get(id) ?? 0) + 1);
        this.awaitingRel.set(packetId, id);
      }
      peer.sendPacket({ cmd: 'pubrec', messageId: packetId, reasonCode: 0 });
    } else {
      this.problems.push(`${id} arrived at QoS 0`);
    }
  }

  /** Messages whose PUBACK/PUBCOMP the broker had surely committed before the crash (see the header). */
  surelyCompleted(): Set<string> {
    // lastProof: index of the last arrival that left only after its unit was committed (QoS 2)
    let lastProof = -1;
    for (let j = 0; j < this.arrivals.length; j++) if (this.arrivals[j]!.qos === 2) lastProof = j;
    // Arrival number r + WINDOW (index r + WINDOW - 1) is the first that took its slot after the completion was read
    return new Set(this.completions.filter((c) => c.received + WINDOW - 1 <= lastProof).map((c) => c.id));
  }
}

/** A load publisher with packet ids 1..count (never reused), paced, at most PUBLISHER_WINDOW unfinished. */
class Publisher {
  readonly clientId = uniqueId('crash-pub');
  peer: RawPeer | undefined;
  readonly sessionPresent: boolean[] = [];
  nextSeq = 1;
  unfinished = 0;
  stopped = false;
  #ticker: NodeJS.Timeout | undefined;
  readonly sent = new Set<number>();
  /** PUBACK or PUBREC with a success code: the broker has taken responsibility. */
  readonly acked = new Set<number>();
  readonly ackedAfterRestart = new Set<number>();
  readonly pubrecd = new Set<number>();
  /** PUBACK or PUBCOMP received: the flow is finished. */
  readonly finished = new Set<number>();
  readonly problems: string[] = [];
  life: 0 | 1 = 0;
  /** After the restart: PUBLISHes resent with DUP (no PUBREC before the crash) and PUBRELs resent (no PUBCOMP). */
  resentPublishes = 0;
  resentPubrels = 0;

  constructor(
    readonly name: string, readonly transport: Transport, readonly version: Version, readonly qos: 1 | 2,
    readonly persistent: boolean, readonly count: number, readonly onAck: () => void,
  ) {}

  id(seq: number): string {
    return `${this.name}:${seq}`;
  }

  async connect(target: PeerTarget): Promise<void> {
    const peer = await RawPeer.open(target, this.transport, this.version, { log: false });
    this.peer = peer;
    peer.on((p) => this.#onPacket(peer, p));
    const connack = await peer.connect(this.persistent ? persistentConnect(this.version, this.clientId) : { clientId: this.clientId, clean: true });
    assert.equal(connackCode(connack), 0, `${this.name}: CONNACK`);
    this.sessionPresent.push(connack.sessionPresent);
  }

  #publish(seq: number, dup: boolean): void {
    this.peer!.sendPacket({
      cmd: 'publish', topic: `${LOAD}/${this.name}`, payload: Buffer.from(this.id(seq)), qos: this.qos, retain: false,
      messageId: seq, dup,
    });
  }

  /** Stream until stopped or the connection drops. */
  start(): void {
    this.#ticker = setInterval(() => this.#pump(), 2);
    this.peer!.onClose(() => this.stop());
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.#ticker);
  }

  #pump(): void {
    for (let n = 0; n < BURST && !this.stopped && this.unfinished < PUBLISHER_WINDOW && this.nextSeq <= this.count; n++) {
      const seq = this.nextSeq++;
      this.sent.add(seq);
      this.unfinished++;
      this.#publish(seq, false);
    }
  }

  #ack(seq: number, rc: number): void {
    if (rc >= 0x80) {
      this.problems.push(`${this.id(seq)} refused with 0x${rc.toString(16)}`);
      return;
    }
    if (this.acked.has(seq)) return;
    this.acked.add(seq);
    if (this.life === 1) this.ackedAfterRestart.add(seq);
    this.onAck();
  }

  #onPacket(peer: RawPeer, p: Packet): void {
    this.#handle(peer, p);
    progress.emit('change');
  }

  #handle(peer: RawPeer, p: Packet): void {
    const seq = 'messageId' in p ? p.messageId ?? 0 : 0;
    if (p.cmd === 'puback') {
      this.#ack(seq, p.reasonCode ?? 0);
      this.finished.add(seq);
      this.unfinished--;
    } else if (p.cmd === 'pubrec') {
      this.#ack(seq, p.reasonCode ?? 0);
      if ((p.reasonCode ?? 0) >= 0x80) {
        this.finished.add(seq);
        this.unfinished--;
        return;
      }
      this.pubrecd.add(seq);
      peer.sendPacket({ cmd: 'pubrel', messageId: seq, reasonCode: 0 });
    } else if (p.cmd === 'pubcomp') {
      if (!this.finished.has(seq)) {
        this.finished.add(seq);
        this.unfinished--;
      }
    } else if (p.cmd === 'disconnect') {
      this.problems.push(`DISCONNECT from the broker (reason 0x${(p.reasonCode ?? 0).toString(16)})`);
    }
  }

  /** After the restart: resume the session and finish every flow begun before the crash, in order [MQTT-4.4.0-1]. */
  async resume(target: PeerTarget): Promise<void> {
    this.life = 1;
    await this.connect(target);
    for (const seq of [...this.sent].sort((a, b) => a - b)) {
      if (this.finished.has(seq)) continue;
      if (this.pubrecd.has(seq)) {
        this.resentPubrels++;
        this.peer!.sendPacket({ cmd: 'pubrel', messageId: seq, reasonCode: 0 });
      } else {
        this.resentPublishes++;
        this.#publish(seq, true);
      }
    }
  }
}

describe('kill -9 under load', { concurrency: false }, () => {
  let db: TestDatabase;
  let broker1: BrokerProcess | undefined;
  let broker2: BrokerProcess | undefined;
  const subscribers: Subscriber[] = [];
  const publishers: Publisher[] = [];
  const mqttClients: MqttClient[] = [];
  const pubQos = new Map<string, 1 | 2>();
  const qosOf = (id: string): 1 | 2 | undefined => pubQos.get(id.slice(0, id.lastIndexOf(':')));
  let acksAtKill = 0;
  let killAt = 0;
  let expected = new Set<string>();
  // Wills and retained messages
  const willSubId = uniqueId('crash-willsub');
  const willSubPresent: boolean[] = [];
  let willsBeforeCrash: string[] = [];
  let willsAfterRestart: Array<{ topic: string; payload: string }> = [];
  let retainedAfterRestart: Array<{ topic: string; payload: string; retain: boolean }> = [];
  let willBForLateSubscriber: Array<{ topic: string; payload: string; retain: boolean }> = [];
  const timings: Record<string, number> = {};
  let atKill = '';
  const ackedBeforeCrash = new Set<string>();
  const storedAtCrash = new Set<string>();
  let deliveriesAtCrash = '';
  let crashWindow = '';
  /** Per subscriber client id: packet ids whose delivery row was stored in state 'pubrec' when the broker died. */
  const storedPubrecAtCrash = new Map<string, Set<number>>();
  /** Why convergence after the restart failed ('' if it did not). */
  let convergeError = '';

  before(async () => {
    const t0 = Date.now();
    // Every wait below is bounded by what is left of SETUP_TIMEOUT (less a margin to report), never by more
    const deadline = t0 + SETUP_TIMEOUT - 2000;
    const left = (ms: number): number => Math.max(1, Math.min(ms, deadline - Date.now()));
    db = await createTestDatabase();
    broker1 = await startBroker(BROKER_ARGS, {}, { databaseUrl: db.url, readyTimeoutMs: left(20_000) });
    const b1 = broker1;

    // Load subscribers: every transport × version, one connected during the load and one offline
    const layout: Array<[Transport, Version, 1 | 2, boolean]> = [
      ['tcp', 4, 1, true], ['tcp', 4, 2, false], ['tcp', 5, 2, true], ['tcp', 5, 1, false],
      ['ws', 4, 2, true], ['ws', 4, 1, false], ['ws', 5, 1, true], ['ws', 5, 2, false],
    ];
    for (const [transport, version, qos, online] of layout) {
      subscribers.push(new Subscriber(`${online ? 'online' : 'offline'}-${transport}-v${version}-q${qos}`, transport, version, qos, online, qosOf));
    }
    for (const s of subscribers) {
      await s.connect(b1);
      await s.subscribe();
      if (!s.online) await s.leave();
    }

    // Retained: one kept, one set and then cleared
    const rp = await RawPeer.open(b1, 'tcp', 5, { log: false });
    await rp.connect({ clientId: uniqueId('crash-retain'), clean: true });
    let rid = 0;
    const retain = async (topic: string, payload: string): Promise<void> => {
      const messageId = ++rid;
      const ack = rp.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, `PUBACK for retained ${topic}`);
      rp.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, messageId, dup: false });
      const p = (await ack) as Extract<Packet, { cmd: 'puback' }>;
      assert.ok((p.reasonCode ?? 0) < 0x80, `retained ${topic} acknowledged`);
    };
    await retain(`${RETAINED}/keep`, 'kept');
    await retain(`${RETAINED}/gone`, 'soon gone');
    await retain(`${RETAINED}/gone`, '');
    rp.destroy();

    // Wills of persistent sessions connected at the crash, and a persistent subscriber to them
    const watch = startClient(b1, 'ws', 5, { clientId: willSubId, clean: false, properties: { sessionExpiryInterval: EXPIRY } });
    watch.client.on('error', () => undefined);
    mqttClients.push(watch.client);
    const watchInbox = new Inbox(watch.client);
    willSubPresent.push((await watch.connack).sessionPresent);
    await watch.client.subscribeAsync(`${WILLS}/#`, { qos: 1 });
    const willA = startClient(b1, 'tcp', 5, {
      clientId: uniqueId('crash-will-a'), clean: false, properties: { sessionExpiryInterval: EXPIRY },
      will: { topic: `${WILLS}/a`, payload: Buffer.from('will-a'), qos: 1, retain: false, properties: { willDelayInterval: 0 } },
    });
    const willB = startClient(b1, 'ws', 4, {
      clientId: uniqueId('crash-will-b'), clean: false,
      will: { topic: `${WILLS}/b`, payload: Buffer.from('will-b'), qos: 1, retain: true },
    });
    for (const c of [willA, willB]) {
      c.client.on('error', () => undefined);
      mqttClients.push(c.client);
      await c.connack;
    }

    // Publishers: QoS 1 on clean sessions, QoS 2 on persistent sessions (their PUBREC state must survive too)
    let acks = 0;
    let kill: (() => void) | undefined;
    const killed = new Promise<void>((resolve) => { kill = resolve; });
    const total = 4 * PER_PUBLISHER;
    killAt = Math.ceil(total / 3);
    const onAck = (): void => {
      acks++;
      if (acks === killAt) kill!();
    };
    const pubLayout: Array<[string, Transport, Version, 1 | 2, boolean]> = [
      ['q1-tcp-v5', 'tcp', 5, 1, false], ['q1-ws-v4', 'ws', 4, 1, false],
      ['q2-tcp-v4', 'tcp', 4, 2, true], ['q2-ws-v5', 'ws', 5, 2, true],
    ];
    for (const [name, transport, version, qos, persistent] of pubLayout) {
      const p = new Publisher(name, transport, version, qos, persistent, PER_PUBLISHER, onAck);
      pubQos.set(name, qos);
      publishers.push(p);
      await p.connect(b1);
    }
    timings['setupMs'] = Date.now() - t0;

    const loadStart = Date.now();
    for (const p of publishers) p.start();
    // The load may take until 30 s before the deadline; what follows the kill needs the rest
    const loadLimit = Math.max(1000, Math.min(25_000, deadline - Date.now() - 30_000));
    const timer = setTimeout(() => kill!(), loadLimit);
    await killed;
    clearTimeout(timer);
    acksAtKill = acks;
    // kill -9 at the worst instant: while a batch's COMMIT is being applied by PostgreSQL, so that it
    // ends up stored although no acknowledgement for it can leave any more.
    crashWindow = await killDuringCommit(b1, db.url, left(10_000));
    for (const p of publishers) p.stop();
    timings['killAt'] = Date.now() - loadStart;
    assert.ok(acksAtKill >= killAt, `only ${acksAtKill} of ${killAt} acknowledgements arrived within ${loadLimit} ms`);

    // Every connection sees the crash; whatever arrived until then counts as before the crash
    await Promise.all([...subscribers.filter((s) => s.online), ...publishers].map((x) => x.peer!.closed(left(5000))));
    await Promise.all(mqttClients.map((c) => (c.connected ? new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`MQTT.js client ${c.options.clientId} still connected after the kill`)), left(5000));
      c.once('close', () => { clearTimeout(t); resolve(); });
    }) : undefined)));
    for (const s of subscribers) s.awaitingRelAtCrash = new Set(s.awaitingRel.keys());
    willsBeforeCrash = watchInbox.items.map((m) => `${m.topic}:${m.payload}`);
    atKill = publishers.map((p) => `${p.name} sent ${p.sent.size} acked ${p.acked.size} finished ${p.finished.size}`).join('; ');
    for (const p of publishers) for (const seq of p.acked) ackedBeforeCrash.add(p.id(seq));
    // What the dead broker left in the database: the oracle for "stored" (messages rows stay until
    // garbage collection, which only takes rows older than a minute; a message kept inside its only
    // delivery's row is there while that delivery is: every load message here also goes to offline
    // sessions, so it has several deliveries and a messages row, but both places are read)
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const rows = (await client.query(`SELECT convert_from(payload, 'UTF8') AS id FROM messages WHERE topic_name LIKE $1
        UNION SELECT convert_from(message_payload, 'UTF8') FROM deliveries WHERE message_topic_name LIKE $1`, [`${LOAD}/%`])).rows as Array<{ id: string }>;
      for (const r of rows) storedAtCrash.add(r.id);
      const d = (await client.query(`SELECT state, count(*)::int AS n FROM deliveries GROUP BY state ORDER BY state`)).rows as Array<{ state: string; n: number }>;
      deliveriesAtCrash = d.map((r) => `${r.state} ${r.n}`).join(', ');
      const pubrec = (await client.query(`SELECT client_id, packet_id FROM deliveries WHERE state = 'pubrec'`)).rows as Array<{ client_id: string; packet_id: number }>;
      for (const r of pubrec) {
        const set = storedPubrecAtCrash.get(r.client_id) ?? new Set<number>();
        set.add(r.packet_id);
        storedPubrecAtCrash.set(r.client_id, set);
      }
    } finally {
      await client.end();
    }

    // Restart on the same database
    const t1 = Date.now();
    broker2 = await startBroker(BROKER_ARGS, {}, { databaseUrl: db.url, readyTimeoutMs: left(20_000) });
    const b2 = broker2;
    timings['restartMs'] = Date.now() - t1;
    for (const s of subscribers) s.life = 1;
    await Promise.all(subscribers.map((s) => s.connect(b2)));
    await Promise.all(publishers.filter((p) => p.qos === 2).map((p) => p.resume(b2)));
    const watch2 = startClient(b2, 'ws', 5, { clientId: willSubId, clean: false, properties: { sessionExpiryInterval: EXPIRY } });
    watch2.client.on('error', () => undefined);
    mqttClients.push(watch2.client);
    const watch2Inbox = new Inbox(watch2.client);
    willSubPresent.push((await watch2.connack).sessionPresent);

    // Converge: every acknowledged message delivered everywhere, every QoS 2 flow finished
    const recompute = (): void => {
      expected = new Set(publishers.flatMap((p) => [...p.acked].map((seq) => p.id(seq))));
    };
    const t2 = Date.now();
    // Leave 6 s of the budget for the barriers and the will and retained checks below
    await until(() => {
      // The cheap conditions first: the per-message check runs only once they hold
      if (!publishers.every((p) => p.qos === 1 || p.finished.size === p.sent.size) || subscribers.some((s) => s.awaitingRel.size > 0)) return false;
      recompute();
      return subscribers.every((s) => s.awaitingRel.size === 0 && [...expected].every((id) => s.delivered.has(id)));
    }, left(Math.max(1, deadline - Date.now() - 6000)), () => {
      recompute();
      const subs = subscribers.map((s) => `${s.name}: ${[...expected].filter((id) => !s.delivered.has(id)).length} missing, ${s.awaitingRel.size} awaiting PUBREL`);
      const pubs = publishers.map((p) => `${p.name}: ${p.sent.size - p.finished.size} unfinished`);
      return [...subs, ...pubs].join('; ');
    }).catch((err: Error) => { convergeError = err.message; }); // asserted in its own test; the others report what is missing
    timings['convergeMs'] = Date.now() - t2;

    // Barriers instead of sleeps: a message published now is queued behind anything still owed to a
    // session, so once it has arrived a late duplicate (or a will sent twice) would have arrived too.
    const barrier = await RawPeer.open(b2, 'tcp', 5, { log: false });
    await barrier.connect({ clientId: uniqueId('crash-barrier'), clean: true });
    let barrierId = 0;
    const publishBarrier = async (topic: string, payload: string): Promise<void> => {
      const messageId = ++barrierId;
      const ack = barrier.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, `PUBACK for ${topic}`, left(5000));
      barrier.sendPacket({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, messageId, dup: false });
      await ack;
    };
    if (!convergeError) {
      pubQos.set('barrier', 1);
      await publishBarrier(`${LOAD}/barrier`, 'barrier:1');
      await until(() => subscribers.every((s) => s.delivered.has('barrier:1')), left(5000), () => 'the barrier message did not reach every subscriber');
    }
    recompute();

    // Wills after the restart, then a late subscriber for the retained will, and the retained messages
    await watch2Inbox.until(() => watch2Inbox.on(`${WILLS}/a`).length > 0 && watch2Inbox.on(`${WILLS}/b`).length > 0, 'both wills', left(5000));
    await publishBarrier(`${WILLS}/barrier`, 'barrier');
    await watch2Inbox.next(`${WILLS}/barrier`, left(5000));
    willsAfterRestart = watch2Inbox.items.filter((m) => m.topic !== `${WILLS}/barrier`).map((m) => ({ topic: m.topic, payload: m.payload }));
    const late = startClient(b2, 'tcp', 4, { clientId: uniqueId('crash-late'), clean: true });
    late.client.on('error', () => undefined);
    mqttClients.push(late.client);
    const lateInbox = new Inbox(late.client);
    await late.connack;
    await late.client.subscribeAsync(`${WILLS}/b`, { qos: 1 });
    await late.client.subscribeAsync(`${RETAINED}/#`, { qos: 1 });
    await lateInbox.until(() => lateInbox.on(`${WILLS}/b`).length > 0 && lateInbox.on(`${RETAINED}/keep`).length > 0, 'the retained will and message', left(5000));
    await publishBarrier(`${RETAINED}/barrier`, 'barrier');
    await lateInbox.next(`${RETAINED}/barrier`, left(5000));
    barrier.destroy();
    willBForLateSubscriber = lateInbox.on(`${WILLS}/b`).map((m) => ({ topic: m.topic, payload: m.payload, retain: m.retain }));
    retainedAfterRestart = lateInbox.items.filter((m) => m.topic.startsWith(`${RETAINED}/`) && m.topic !== `${RETAINED}/barrier`)
      .map((m) => ({ topic: m.topic, payload: m.payload, retain: m.retain }));
  }, { timeout: SETUP_TIMEOUT });

  after(async () => {
    for (const s of subscribers) s.peer?.destroy();
    for (const p of publishers) p.peer?.destroy();
    await close(...mqttClients);
    await broker1?.kill();
    await broker2?.stop();
    await db?.drop();
  });

  test('counts', (t) => {
    t.diagnostic(`timings ${JSON.stringify(timings)}`);
    t.diagnostic(`killed after ${acksAtKill} acknowledgements (trigger ${killAt} of ${4 * PER_PUBLISHER} messages); publishers then: ${atKill}`);
    t.diagnostic(`crash: ${crashWindow}`);
    t.diagnostic(`in the database after the kill: ${storedAtCrash.size} load messages; deliveries by state: ${deliveriesAtCrash}`);
    let storedNotAckedQos2 = 0;
    for (const p of publishers) {
      const ids = [...p.sent].map((seq) => p.id(seq));
      const storedNotAcked = ids.filter((id) => storedAtCrash.has(id) && !ackedBeforeCrash.has(id)).length;
      if (p.qos === 2) storedNotAckedQos2 += storedNotAcked;
      t.diagnostic(`${p.name}: sent ${p.sent.size}, acknowledged ${p.acked.size} (${p.ackedAfterRestart.size} of them after the restart), finished ${p.finished.size}; `
        + `resent after restart: ${p.resentPublishes} PUBLISH, ${p.resentPubrels} PUBREL; stored before the crash but not acknowledged: ${storedNotAcked}`);
    }
    for (const s of subscribers) {
      const all = [...s.publishes.values()];
      const before = all.reduce((n, l) => n + l.filter((r) => r.life === 0).length, 0);
      const after = all.reduce((n, l) => n + l.filter((r) => r.life === 1).length, 0);
      const dups = [...s.delivered.values()].reduce((n, c) => n + (c - 1), 0);
      t.diagnostic(`${s.name}: PUBLISH before ${before} / after ${after}; delivered ${s.delivered.size} distinct, ${dups} duplicate deliveries; surely acked before crash ${s.surelyCompleted().size}; QoS 2 resends ${s.qos2Resends}; unknown PUBRELs ${s.unknownPubrels}`);
    }
    assert.ok(expected.size >= killAt, 'the crash happened with messages acknowledged');
    assert.ok(storedNotAckedQos2 > 0, 'the crash hit the window "stored, PUBREC not sent" (so resent QoS 2 PUBLISHes were tested)');
    assert.ok(subscribers.filter((s) => s.online).every((s) => s.receivedBeforeCrash > WINDOW), 'online subscribers received messages before the crash');
  });

  test('[§3.1] every message acknowledged before the crash was in the database when the broker died', () => {
    assert.deepEqual([...ackedBeforeCrash].filter((id) => !storedAtCrash.has(id)), []);
  });

  test('[§3.1] every acknowledged message reaches every persistent subscriber, across the crash', (t) => {
    const missing: Record<string, string[]> = {};
    for (const s of subscribers) {
      const m = [...expected].filter((id) => !s.delivered.has(id));
      if (m.length) missing[s.name] = m.slice(0, 20).concat(m.length > 20 ? [`… ${m.length} in all`] : []);
      t.diagnostic(`${s.name}: ${expected.size - m.length}/${expected.size} acknowledged messages delivered`);
    }
    assert.deepEqual(missing, {});
  });

  test('[§3.2] no QoS 2 message is delivered twice, across the crash; every QoS 2 flow completes with PUBREL', () => {
    const twice: Record<string, string[]> = {};
    for (const s of subscribers.filter((x) => x.qos === 2)) {
      const d = [...s.delivered].filter(([id, n]) => qosOf(id) === 2 && n > 1).map(([id, n]) => `${id}×${n}`);
      if (d.length) twice[s.name] = d;
    }
    assert.deepEqual(twice, {});
    assert.deepEqual(subscribers.filter((s) => s.awaitingRel.size > 0).map((s) => `${s.name}: ${[...s.awaitingRel.values()].join(',')}`), []);
    // a PUBREL after the restart for an id we had completed is allowed only if our PUBCOMP may not have been stored
    for (const s of subscribers) {
      const sure = s.surelyCompleted();
      const unsureQos2 = s.completions.filter((c) => c.qos === 2 && !sure.has(c.id)).length;
      assert.ok(s.unknownPubrels <= unsureQos2, `${s.name}: ${s.unknownPubrels} PUBRELs for completed flows, only ${unsureQos2} unconfirmed`);
    }
  });

  test('[§3.2] every QoS 2 publisher flow begun before the crash finishes after the restart', () => {
    assert.equal(convergeError, '', 'every acknowledged message delivered and every QoS 2 flow finished after the restart');
    const unfinished = publishers.filter((p) => p.qos === 2 && (p.acked.size !== p.sent.size || p.finished.size !== p.sent.size))
      .map((p) => `${p.name}: sent ${p.sent.size}, acknowledged ${p.acked.size}, finished ${p.finished.size}`);
    assert.deepEqual(unfinished, []);
  });

  test('[§3.2] a QoS 2 PUBLISH comes again after the restart only where the subscriber\'s PUBREC was not stored, and at most once', () => {
    const violations: string[] = [];
    let resends = 0;
    for (const s of subscribers.filter((x) => x.qos === 2)) {
      const stored = storedPubrecAtCrash.get(s.clientId) ?? new Set<number>();
      const seen = new Set<number>();
      for (const packetId of s.resentAfterRestart) {
        resends++;
        if (stored.has(packetId)) violations.push(`${s.name}: packet id ${packetId} sent as PUBLISH again though its PUBREC was stored (PUBREL expected)`);
        if (!s.awaitingRelAtCrash.has(packetId)) violations.push(`${s.name}: packet id ${packetId} resent though no PUBREL was awaited at the crash`);
        if (seen.has(packetId)) violations.push(`${s.name}: packet id ${packetId} resent more than once`);
        seen.add(packetId);
      }
    }
    assert.deepEqual(violations, []);
    assert.ok(resends <= subscribers.reduce((n, s) => n + s.awaitingRelAtCrash.size, 0));
  });

  test('[§3.1] [§3.3] a message comes again only where its PUBACK/PUBCOMP may not have been stored: resumed with DUP 1 and the original packet id, or (QoS 1) as a new delivery', (t) => {
    const violations: string[] = [];
    let redelivered = 0;
    let sentAgain = 0;
    for (const s of subscribers) {
      const sure = s.surelyCompleted();
      for (const [id, receipts] of s.publishes) {
        const before = receipts.filter((r) => r.life === 0);
        const after = receipts.filter((r) => r.life === 1);
        if (before.length > 1) violations.push(`${s.name}: ${id} received ${before.length}× before the crash`);
        if (after.length > 1) violations.push(`${s.name}: ${id} received ${after.length}× after the restart`);
        if (before.length === 0 || after.length === 0) continue;
        redelivered++;
        if (sure.has(id)) violations.push(`${s.name}: ${id} redelivered though its PUBACK/PUBCOMP was stored before the crash`);
        if (!after[0]!.dup) {
          if (after[0]!.qos === 1) {
            sentAgain++; // a new QoS 1 delivery (see the header)
            continue;
          }
          violations.push(`${s.name}: ${id} resent without DUP`);
        }
        if (after[0]!.packetId !== before[0]!.packetId) {
          violations.push(`${s.name}: ${id} resent with packet id ${after[0]!.packetId}, was ${before[0]!.packetId}`);
        }
      }
      for (const p of s.problems) violations.push(`${s.name}: ${p}`);
    }
    for (const p of publishers) for (const x of p.problems) violations.push(`${p.name}: ${x}`);
    t.diagnostic(`${redelivered} messages resent after the restart (received but not surely acknowledged before the crash); ${sentAgain} of them QoS 1 as new deliveries`);
    assert.deepEqual(violations, []);
  });

  test('[§3.3] every persistent session resumes with session present 1', () => {
    const present = Object.fromEntries([
      ...subscribers.map((s) => [s.name, s.sessionPresent]),
      ...publishers.filter((p) => p.persistent).map((p) => [p.name, p.sessionPresent]),
      ['will subscriber', willSubPresent],
    ]);
    const want = Object.fromEntries(Object.keys(present).map((k) => [k, [false, true]]));
    assert.deepEqual(present, want);
  });

  test('[§3.3] retained messages are back after the restart', () => {
    assert.deepEqual(retainedAfterRestart, [{ topic: `${RETAINED}/keep`, payload: 'kept', retain: true }]);
  });

  test('[§3.4] wills of sessions connected at the crash are published after the restart', () => {
    assert.deepEqual(willsBeforeCrash, [], 'no will before the crash');
    const sorted = [...willsAfterRestart].sort((a, b) => a.topic.localeCompare(b.topic));
    assert.deepEqual(sorted, [{ topic: `${WILLS}/a`, payload: 'will-a' }, { topic: `${WILLS}/b`, payload: 'will-b' }]);
    assert.deepEqual(willBForLateSubscriber, [{ topic: `${WILLS}/b`, payload: 'will-b', retain: true }], 'the retained will reaches a subscriber that subscribes after the restart');
  });
});
