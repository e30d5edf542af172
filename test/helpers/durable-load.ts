// Mixed durable load across broker restarts, and its oracle. Publishers stream QoS 0 (clean),
// QoS 1 (clean) and QoS 2 (persistent sessions, which finish their flows after a restart: PUBLISH
// again with DUP where no PUBREC came, PUBREL where it did) to persistent subscribers (3.1.1 clean
// session 0 and 5.0 Session Expiry Interval, QoS 1 and 2, TCP and WebSocket; one of them stays
// offline until the end) and clean subscribers. The broker is ended (kill -9, SIGTERM, ...) and
// restarted on the same database as often as the caller likes; every peer then reconnects.
// The oracle: every message acknowledged to its publisher (PUBACK, or PUBREC for QoS 2, with a
// success code) reaches every persistent subscriber whose subscription QoS is ≥ 1; no message
// published at QoS 2 is delivered twice to a QoS 2 subscriber (a PUBLISH for a packet id awaiting
// PUBREL is a resend, not a delivery); persistent sessions resume (session present 1); every QoS 2
// flow of a publisher completes. All peers are raw (test/helpers/raw-peer.ts), so the load knows
// exactly what it acknowledged.
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from './broker-process.ts';
import { uniqueId, type Transport, type Version } from './clients.ts';
import { connackCode } from './mqtt-wire.ts';
import { RawPeer } from './raw-peer.ts';

const EXPIRY = 3600;
/** QoS 1/2 messages a publisher keeps unacknowledged at once. */
const PUBLISHER_WINDOW = 64;

function connectOptions(version: Version, clientId: string, persistent: boolean): { clientId: string; clean: boolean; properties?: Record<string, number> } {
  if (!persistent) return { clientId, clean: true };
  return { clientId, clean: false, ...(version === 5 ? { properties: { sessionExpiryInterval: EXPIRY, receiveMaximum: 1024 } } : {}) };
}

/**
 * Wait for `done()`, checked at most every 50 ms while `subscribe`'s wake-ups come (a check may
 * cost O(messages): checking after every packet would be quadratic), or reject after `timeoutMs`
 * with `describe()`.
 */
function waitUntil(done: () => boolean, timeoutMs: number, describe: () => string, subscribe: (wake: () => void) => () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let stop = (): void => undefined;
    let dirty = false;
    const finish = (): void => {
      clearTimeout(timer);
      clearInterval(poll);
      stop();
    };
    const timer = setTimeout(() => { finish(); reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`)); }, timeoutMs);
    const poll = setInterval(() => {
      if (!dirty) return;
      dirty = false;
      if (done()) { finish(); resolve(); }
    }, 50);
    stop = subscribe(() => { dirty = true; });
    if (done()) { finish(); resolve(); }
  });
}

class Publisher {
  readonly clientId = uniqueId('load-pub');
  peer: RawPeer | undefined;
  /** Messages acknowledged (PUBACK / PUBREC with a success code). */
  readonly acked: string[] = [];
  /** Packet id → message and stage of the flows in progress. */
  readonly inflight = new Map<number, { id: string; stage: 'sent' | 'received' }>();
  nextSeq = 0;
  nextPacketId = 1;
  sent = 0;
  publishing = false;
  readonly problems: string[] = [];
  readonly sessionPresent: boolean[] = [];

  constructor(readonly name: string, readonly transport: Transport, readonly version: Version, readonly qos: 0 | 1 | 2, readonly topic: string, readonly onChange: () => void) {}

  get persistent(): boolean {
    return this.qos === 2;
  }

  async connect(broker: BrokerProcess, life: number): Promise<void> {
    const peer = await RawPeer.open(broker, this.transport, this.version, { log: false });
    this.peer = peer;
    peer.on((p) => this.#onPacket(peer, p));
    peer.onClose(() => this.onChange());
    const connack = await peer.connect(connectOptions(this.version, this.clientId, this.persistent), 15_000);
    if (connackCode(connack) !== 0) throw new Error(`${this.name}: CONNACK ${connackCode(connack)}`);
    if (this.persistent) {
      this.sessionPresent.push(connack.sessionPresent);
      if (life > 0 && !connack.sessionPresent) this.problems.push(`life ${life}: session not resumed (session present 0)`);
    }
    if (!this.persistent) this.inflight.clear(); // a new session: flows of the old one are abandoned
    // Finish the QoS 2 flows of the resumed session, in order
    for (const [packetId, f] of this.inflight) {
      if (f.stage === 'sent') peer.sendPacket({ cmd: 'publish', topic: this.topic, payload: Buffer.from(f.id), qos: 2, dup: true, retain: false, messageId: packetId });
      else peer.sendPacket({ cmd: 'pubrel', messageId: packetId });
    }
  }

  #onPacket(peer: RawPeer, p: Packet): void {
    if (p.cmd === 'puback' || p.cmd === 'pubrec') {
      const id = p.messageId ?? 0;
      const f = this.inflight.get(id);
      if (!f) {
        this.problems.push(`${p.cmd} for packet id ${id} not in flight`);
        return;
      }
      const rc = p.reasonCode ?? 0;
      if (p.cmd === 'pubrec' && f.stage === 'received') {
        peer.sendPacket({ cmd: 'pubrel', messageId: id });
        return;
      }
      if (rc >= 0x80) {
        this.problems.push(`${p.cmd} reason 0x${rc.toString(16)} for ${f.id}`);
        this.inflight.delete(id);
      } else {
        this.acked.push(f.id);
        if (p.cmd === 'puback') {
          this.inflight.delete(id);
        } else {
          f.stage = 'received';
          peer.sendPacket({ cmd: 'pubrel', messageId: id });
        }
      }
      this.onChange();
    } else if (p.cmd === 'pubcomp') {
      const id = p.messageId ?? 0;
      if (this.inflight.get(id)?.stage === 'received') this.inflight.delete(id);
      else this.problems.push(`PUBCOMP for packet id ${id} not awaiting one`);
      this.onChange();
    } else if (p.cmd === 'disconnect') {
      // 0x8B at SIGTERM is expected; anything else is not
      if (p.reasonCode !== 0x8b) this.problems.push(`DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)} from the broker`);
    }
  }

  /** Send one new message if the window allows. */
  tick(): void {
    const peer = this.peer;
    if (!this.publishing || !peer || peer.isClosed) return;
    if (this.qos === 0) {
      const id = `${this.name}-${this.nextSeq++}`;
      peer.sendPacket({ cmd: 'publish', topic: this.topic, payload: Buffer.from(id), qos: 0, dup: false, retain: false });
      this.sent++;
      return;
    }
    if (this.inflight.size >= PUBLISHER_WINDOW) return;
    let packetId = this.nextPacketId;
    while (this.inflight.has(packetId)) packetId = (packetId % 65535) + 1;
    this.nextPacketId = (packetId % 65535) + 1;
    const id = `${this.name}-${this.nextSeq++}`;
    this.inflight.set(packetId, { id, stage: 'sent' });
    peer.sendPacket({ cmd: 'publish', topic: this.topic, payload: Buffer.from(id), qos: this.qos, dup: false, retain: false, messageId: packetId });
    this.sent++;
  }
}

class Subscriber {
  readonly clientId = uniqueId('load-sub');
  peer: RawPeer | undefined;
  /** Application deliveries per message id. */
  readonly delivered = new Map<string, number>();
  /** QoS 2 packet ids answered with PUBREC whose PUBREL has not come (kept across reconnects: session state). */
  readonly awaitingRel = new Map<number, string>();
  qos2Resends = 0;
  received = 0;
  readonly problems: string[] = [];
  readonly sessionPresent: boolean[] = [];
  subscribed = false;

  constructor(readonly name: string, readonly transport: Transport, readonly version: Version, readonly qos: 0 | 1 | 2,
    readonly persistent: boolean, readonly filter: string, readonly onChange: () => void) {}

  async connect(broker: BrokerProcess, life: number): Promise<void> {
    const peer = await RawPeer.open(broker, this.transport, this.version, { log: false });
    this.peer = peer;
    peer.on((p) => this.#onPacket(peer, p));
    peer.onClose(() => this.onChange());
    const connack = await peer.connect(connectOptions(this.version, this.clientId, this.persistent), 15_000);
    if (connackCode(connack) !== 0) throw new Error(`${this.name}: CONNACK ${connackCode(connack)}`);
    this.sessionPresent.push(connack.sessionPresent);
    if (this.persistent && this.subscribed && !connack.sessionPresent) this.problems.push(`life ${life}: session not resumed (session present 0)`);
    if (!this.persistent) this.awaitingRel.clear();
    if (!this.persistent || !this.subscribed) {
      const suback = peer.waitFor((p) => p.cmd === 'suback', `${this.name} SUBACK`, 15_000);
      peer.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: this.filter, qos: this.qos }] });
      const s = (await suback) as Extract<Packet, { cmd: 'suback' }>;
      if (s.granted[0] !== this.qos) throw new Error(`${this.name}: granted ${String(s.granted[0])}`);
      this.subscribed = true;
    }
  }

  #deliver(id: string): void {
    this.delivered.set(id, (this.delivered.get(id) ?? 0) + 1);
  }

  #onPacket(peer: RawPeer, p: Packet): void {
    if (p.cmd === 'publish') {
      const m = p as IPublishPacket;
      const id = Buffer.from(m.payload).toString();
      this.received++;
      if (m.qos === 2) {
        const packetId = m.messageId ?? 0;
        if (this.awaitingRel.has(packetId)) {
          this.qos2Resends++;
          if (this.awaitingRel.get(packetId) !== id) this.problems.push(`QoS 2 packet id ${packetId} reused for ${id} before PUBREL of ${this.awaitingRel.get(packetId)}`);
        } else {
          this.#deliver(id);
          this.awaitingRel.set(packetId, id);
        }
        peer.sendPacket({ cmd: 'pubrec', messageId: packetId });
      } else {
        this.#deliver(id);
        if (m.qos === 1) peer.sendPacket({ cmd: 'puback', messageId: m.messageId ?? 0 });
      }
      this.onChange();
    } else if (p.cmd === 'pubrel') {
      const packetId = p.messageId ?? 0;
      this.awaitingRel.delete(packetId);
      peer.sendPacket({ cmd: 'pubcomp', messageId: packetId });
    } else if (p.cmd === 'disconnect') {
      if (p.reasonCode !== 0x8b) this.problems.push(`DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)} from the broker`);
    }
  }
}

export interface LoadReport {
  lives: number;
  /** Messages acknowledged to their publishers, QoS 1 and QoS 2. */
  ackedQos1: number;
  ackedQos2: number;
  qos0Sent: number;
  /** Per persistent subscriber: acknowledged messages it must have and did not get. */
  lost: Record<string, number>;
  /** QoS 2 messages delivered twice to a QoS 2 subscriber. */
  qos2Duplicates: Record<string, number>;
  /** QoS 1 messages delivered more than once (allowed: at least once). */
  qos1Redeliveries: Record<string, number>;
  qos2Resends: number;
  problems: string[];
}

export class DurableLoad {
  readonly run = uniqueId('load').replace(/[^a-zA-Z0-9-]/g, '');
  readonly publishers: Publisher[];
  readonly subscribers: Subscriber[];
  /** A persistent subscriber that subscribes in the first life and then stays away until `finish`. */
  readonly offline: Subscriber;
  life = -1;
  #timer: NodeJS.Timeout | undefined;
  readonly #wakers = new Set<() => void>();

  constructor() {
    const topic = (n: string): string => `load/${this.run}/${n}`;
    const change = (): void => { for (const w of [...this.#wakers]) w(); };
    this.publishers = [
      new Publisher('q0-tcp-v4', 'tcp', 4, 0, topic('q0a'), change),
      new Publisher('q0-ws-v5', 'ws', 5, 0, topic('q0b'), change),
      new Publisher('q1-tcp-v5', 'tcp', 5, 1, topic('q1a'), change),
      new Publisher('q1-ws-v4', 'ws', 4, 1, topic('q1b'), change),
      new Publisher('q2-tcp-v4', 'tcp', 4, 2, topic('q2a'), change),
      new Publisher('q2-ws-v5', 'ws', 5, 2, topic('q2b'), change),
    ];
    const filter = `load/${this.run}/#`;
    this.subscribers = [
      new Subscriber('persistent-q2-tcp-v4', 'tcp', 4, 2, true, filter, change),
      new Subscriber('persistent-q2-ws-v5', 'ws', 5, 2, true, filter, change),
      new Subscriber('persistent-q1-tcp-v5', 'tcp', 5, 1, true, filter, change),
      new Subscriber('persistent-q1-ws-v4', 'ws', 4, 1, true, filter, change),
      new Subscriber('clean-q1-tcp-v5', 'tcp', 5, 1, false, filter, change),
      new Subscriber('clean-q0-ws-v4', 'ws', 4, 0, false, filter, change),
    ];
    this.offline = new Subscriber('offline-q2-tcp-v5', 'tcp', 5, 2, true, filter, change);
  }

  #watch(wake: () => void): () => void {
    this.#wakers.add(wake);
    return () => this.#wakers.delete(wake);
  }

  get acked(): number {
    return this.publishers.reduce((n, p) => n + p.acked.length, 0);
  }

  /** Connect every peer to `broker` (a new life), and start publishing. */
  async startLife(broker: BrokerProcess): Promise<void> {
    this.life++;
    await Promise.all([...this.subscribers, ...this.publishers].map((x) => x.connect(broker, this.life)));
    if (this.life === 0) {
      await this.offline.connect(broker, 0);
      this.offline.peer!.sendPacket({ cmd: 'disconnect', ...(this.offline.version === 5 ? { reasonCode: 0 } : {}) });
      await this.offline.peer!.closed(15_000);
    }
    for (const p of this.publishers) p.publishing = true;
    this.#timer = setInterval(() => { for (const p of this.publishers) p.tick(); }, 2);
  }

  /** Resolve once `n` more messages were acknowledged in this life. */
  async acknowledgedMore(n: number, timeoutMs: number): Promise<void> {
    const target = this.acked + n;
    await waitUntil(() => this.acked >= target, timeoutMs, () => `${this.acked} of ${target} acknowledgements`, (w) => this.#watch(w));
  }

  /** Stop publishing new messages (flows in progress go on). */
  stopPublishing(): void {
    clearInterval(this.#timer);
    for (const p of this.publishers) p.publishing = false;
  }

  /** After the broker was ended: wait until every peer saw its connection close. */
  async peersClosed(timeoutMs: number): Promise<void> {
    this.stopPublishing();
    const all = [...this.publishers, ...this.subscribers];
    await waitUntil(() => all.every((x) => x.peer?.isClosed !== false), timeoutMs, () => `open: ${all.filter((x) => x.peer?.isClosed === false).map((x) => x.name).join(', ')}`, (w) => this.#watch(w));
  }

  /** What each persistent subscriber must have received: acknowledged messages of QoS ≥ 1 publishers. */
  #expected(s: Subscriber): string[] {
    return s.qos === 0 ? [] : this.publishers.filter((p) => p.qos > 0).flatMap((p) => p.acked);
  }

  #missing(s: Subscriber): number {
    let n = 0;
    for (const id of this.#expected(s)) if (!s.delivered.has(id)) n++;
    return n;
  }

  /**
   * In the last life: publishers stop, their flows complete, every persistent subscriber gets
   * what it must have; then the offline subscriber comes back and gets it too.
   */
  async finish(broker: BrokerProcess, timeoutMs: number): Promise<void> {
    this.stopPublishing();
    await waitUntil(() => this.publishers.every((p) => p.inflight.size === 0), timeoutMs,
      () => `publisher flows in progress: ${this.publishers.filter((p) => p.inflight.size > 0).map((p) => `${p.name}: ${p.inflight.size}`).join(', ')}`, (w) => this.#watch(w));
    const online = this.subscribers.filter((s) => s.persistent);
    await waitUntil(() => online.every((s) => this.#missing(s) === 0), timeoutMs,
      () => `${online.map((s) => `${s.name} misses ${this.#missing(s)}`).join(', ')}; problems: ${JSON.stringify(this.report().problems.slice(0, 10))}`, (w) => this.#watch(w));
    await this.offline.connect(broker, this.life);
    await waitUntil(() => this.#missing(this.offline) === 0, timeoutMs, () => `${this.offline.name} misses ${this.#missing(this.offline)}`, (w) => this.#watch(w));
  }

  /** Close every connection (end of the run). */
  closeAll(): void {
    this.stopPublishing();
    for (const x of [...this.publishers, ...this.subscribers, this.offline]) x.peer?.destroy();
  }

  report(): LoadReport {
    const persistent = [...this.subscribers.filter((s) => s.persistent), this.offline];
    const qos2Ids = new Set(this.publishers.filter((p) => p.qos === 2).flatMap((p) => p.acked));
    const lost: Record<string, number> = {};
    const qos2Duplicates: Record<string, number> = {};
    const qos1Redeliveries: Record<string, number> = {};
    const problems: string[] = [];
    for (const s of persistent) {
      lost[s.name] = this.#missing(s);
      let dup = 0;
      let again = 0;
      for (const [id, n] of s.delivered) {
        if (n <= 1) continue;
        if (s.qos === 2 && qos2Ids.has(id)) dup++;
        else again++;
      }
      if (s.qos === 2) qos2Duplicates[s.name] = dup;
      qos1Redeliveries[s.name] = again;
    }
    for (const x of [...this.publishers, ...this.subscribers, this.offline]) for (const p of x.problems) problems.push(`${x.name}: ${p}`);
    return {
      lives: this.life + 1,
      ackedQos1: this.publishers.filter((p) => p.qos === 1).reduce((n, p) => n + p.acked.length, 0),
      ackedQos2: this.publishers.filter((p) => p.qos === 2).reduce((n, p) => n + p.acked.length, 0),
      qos0Sent: this.publishers.filter((p) => p.qos === 0).reduce((n, p) => n + p.sent, 0),
      lost, qos2Duplicates, qos1Redeliveries,
      qos2Resends: persistent.reduce((n, s) => n + s.qos2Resends, 0),
      problems,
    };
  }
}

/** A small deterministic PRNG (the kill points of a run can be replayed from its seed). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export interface CrashLoopOptions {
  kills: number;
  /** Each life is killed once this many more messages (drawn in the range) were acknowledged. */
  ackedPerLife: [number, number];
  seed: number;
  /** Bound for each wait (acknowledgements, closes, the final convergence). */
  timeoutMs: number;
  log: (line: string) => void;
}

export interface CrashLoopReport extends LoadReport {
  kills: number;
  /** Error/fatal log lines of the brokers (each life). */
  errorLines: string[];
}

/**
 * `kills` times: start a broker on `databaseUrl`, let the load reconnect and run until some more
 * messages were acknowledged, then SIGKILL it. Then a last life in which the load completes.
 */
export async function crashLoop(load: DurableLoad, databaseUrl: string, o: CrashLoopOptions): Promise<CrashLoopReport> {
  const random = lcg(o.seed);
  const errorLines: string[] = [];
  const started = Date.now();
  let broker: BrokerProcess | undefined;
  const keepErrors = (b: BrokerProcess, life: number): void => {
    for (const l of b.logs) if (typeof l['level'] === 'number' && (l['level'] as number) >= 50) errorLines.push(`life ${life}: ${String(l['msg'])} ${JSON.stringify(l['err'] ?? '')}`);
  };
  try {
    for (let life = 0; ; life++) {
      broker = await startBroker([], {}, { databaseUrl });
      await load.startLife(broker);
      if (life === o.kills) break;
      const n = o.ackedPerLife[0] + Math.floor(random() * (o.ackedPerLife[1] - o.ackedPerLife[0] + 1));
      await load.acknowledgedMore(n, o.timeoutMs);
      await broker.kill();
      keepErrors(broker, life);
      await load.peersClosed(o.timeoutMs);
      o.log(`kill ${life + 1}/${o.kills}: ${load.acked} messages acknowledged so far (${Math.round((Date.now() - started) / 1000)} s)`);
    }
    await load.finish(broker, o.timeoutMs);
    load.closeAll();
    await broker.stop();
    keepErrors(broker, o.kills);
  } finally {
    load.closeAll();
    await broker?.kill();
  }
  return { ...load.report(), kills: o.kills, errorLines };
}
