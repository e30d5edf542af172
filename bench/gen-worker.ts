// Load-generator worker: a child process driven over IPC by bench/run.ts. It holds publishers
// and/or subscribers (raw MQTT 3.1.1 over ws or TCP: test/helpers/raw-peer.ts, reading PUBLISH and
// acks in place), checks every delivery for loss, duplicates and order (stream + sequence number
// in the payload), measures end-to-end latency from a monotonic timestamp in the payload, and
// reports its own CPU use with every mark.
import { writeFileSync } from 'node:fs';
import { connackCode, encodeAck, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, PublishTemplate } from '../test/helpers/mqtt-wire.ts';
import { RawPeer, type PeerTarget } from '../test/helpers/raw-peer.ts';

export interface Target { kind: 'ws' | 'tcp'; port: number; path: string }
type Msg = Record<string, unknown> & { op: string; id?: number };

const hrNow = (): number => Number(process.hrtime.bigint());

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms); }),
  ]);
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(n, concurrency) }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(lanes);
}

let unexpectedCloses = 0;
/** Connections this worker closes itself: their close is not counted as unexpected. */
const leaving = new WeakSet<RawPeer>();

/** A generator connection: no packet log, and frames the caller does not read in place are decoded. */
async function openConn(t: Target, timeoutMs = 15_000): Promise<RawPeer> {
  const target: PeerTarget = { host: '127.0.0.1', mqttPort: t.port, wsUrl: () => `ws://127.0.0.1:${t.port}${t.path}` };
  const peer = await RawPeer.open(target, t.kind, 4, { log: false, fast: true, timeoutMs });
  peer.onClose(() => { if (!leaving.has(peer)) unexpectedCloses++; });
  return peer;
}

async function connect(peer: RawPeer, clientId: string, clean: boolean, ms = 15_000): Promise<{ sessionPresent: boolean }> {
  const p = await peer.connect({ clientId, clean }, ms);
  if (connackCode(p) !== 0) throw new Error(`CONNACK ${connackCode(p)} for ${clientId}`);
  return { sessionPresent: p.sessionPresent };
}

async function subscribe(peer: RawPeer, filter: string, qos: 0 | 1 | 2, ms = 15_000): Promise<void> {
  const { granted } = await peer.subscribe(filter, qos, { timeoutMs: ms });
  if (granted[0] !== qos) throw new Error(`SUBACK granted ${JSON.stringify(granted)} for QoS ${qos}`);
}

/** Send DISCONNECT, then close the connection gracefully. */
function leave(peer: RawPeer): void {
  leaving.add(peer);
  peer.disconnect();
}

function kill(peer: RawPeer): void {
  leaving.add(peer);
  peer.destroy();
}

/** Read PUBLISH and the acks in place (the hot path); other frames are decoded for `waitFor`. */
function readInPlace(peer: RawPeer, onPublish: (flags: number, b: Buffer, s: number, e: number) => void, onAck: (type: number, id: number) => void): void {
  peer.onFrame = (type, flags, b, s, e) => {
    if (type === PUBLISH) { onPublish(flags, b, s, e); return true; }
    if (type >= PUBACK && type <= PUBCOMP) { onAck(type, b.readUInt16BE(s)); return true; }
    return false;
  };
}

// ---- subscribers ------------------------------------------------------------------------------

let latOn = false;
let lat: number[] = [];
/** BENCH_LAT_DUMP=FILE: also keep each sample's send time (monotonic ns) and write both to FILE.<pid>.<n>.json, one per latency run (attribution) */
const latDump = process.env['BENCH_LAT_DUMP'];
let latAt: number[] = [];
let latDumps = 0;
/** The first deliveries that were not the next expected sequence number (evidence for a report). */
let anomalies: { sub: string; stream: number; seq: number; expected: number; dup: boolean }[] = [];

class Sub {
  conn!: RawPeer;
  uniq = 0;
  dups = 0;
  reordered = 0;
  gaps = 0;
  readonly next: number[] = [];
  readonly uniqByStream: number[] = [];
  readonly missing: (Set<number> | undefined)[] = [];

  constructor(readonly clientId: string) {}

  attach(conn: RawPeer): void {
    this.conn = conn;
    readInPlace(conn, (flags, b, s) => {
      const qos = (flags >> 1) & 3;
      let p = s + 2 + b.readUInt16BE(s);
      if (qos > 0) {
        conn.queue(encodeAck(qos === 1 ? PUBACK : PUBREC, b.readUInt16BE(p)));
        p += 2;
      }
      if (latOn) {
        const sentAt = b.readDoubleBE(p + 8);
        lat.push((hrNow() - sentAt) / 1e3);
        if (latDump) latAt.push(sentAt);
      }
      this.#record(b.readUInt32BE(p), b.readUInt32BE(p + 4));
    }, (type, id) => { if (type === PUBREL) conn.queue(encodeAck(PUBCOMP, id)); });
  }

  #record(stream: number, seq: number): void {
    while (this.next.length <= stream) { this.next.push(0); this.uniqByStream.push(0); this.missing.push(undefined); }
    const nx = this.next[stream]!;
    if (seq !== nx && anomalies.length < 8) anomalies.push({ sub: this.clientId, stream, seq, expected: nx, dup: seq < nx && !this.missing[stream]?.has(seq) });
    if (seq === nx) {
      this.next[stream] = nx + 1;
    } else if (seq > nx) {
      this.gaps++;
      if (seq - nx <= 200_000) {
        const m = this.missing[stream] ?? new Set<number>();
        for (let k = nx; k < seq; k++) m.add(k);
        this.missing[stream] = m;
      }
      this.next[stream] = seq + 1;
    } else if (this.missing[stream]?.delete(seq)) {
      this.reordered++;
    } else {
      this.dups++;
      return;
    }
    this.uniq++;
    this.uniqByStream[stream] = (this.uniqByStream[stream] ?? 0) + 1;
  }

  lostAgainst(expected: number[]): number {
    let lost = 0;
    for (let s = 0; s < expected.length; s++) lost += Math.max(0, expected[s]! - (this.uniqByStream[s] ?? 0));
    return lost;
  }
}

let subs: Sub[] = [];
let progressTimer: NodeJS.Timeout | undefined;
let lastProgress = -1;

function minUniq(): number {
  let m = Infinity;
  for (const s of subs) if (s.uniq < m) m = s.uniq;
  return m;
}

async function openSub(t: Target, sub: Sub, clean: boolean): Promise<boolean> {
  const conn = await openConn(t);
  sub.attach(conn);
  return (await connect(conn, sub.clientId, clean)).sessionPresent;
}

// ---- publishers -------------------------------------------------------------------------------

let totalPublished = 0;
let delivered = 0;
let creditWindow = Infinity;
let limit = Infinity;
let mode: 'max' | 'rate' | undefined;
let rate = 0;
let rateT0 = 0;
let rateSent = 0;
let pumpScheduled = false;
let ackWaiters: (() => void)[] = [];

class Pub {
  readonly tpl: PublishTemplate;
  seq = 0;
  inflight = 0;
  acked = 0;
  readonly ids = new Uint8Array(65536);
  nextId = 1;

  constructor(readonly conn: RawPeer, readonly stream: number, topic: string, readonly qos: 0 | 1 | 2, readonly window: number) {
    this.tpl = new PublishTemplate(topic, qos);
    readInPlace(conn, () => undefined, (type, id) => {
      if (type === PUBREC) { conn.queue(encodeAck(PUBREL, id)); return; }
      if ((type === PUBACK && qos === 1) || (type === PUBCOMP && qos === 2)) {
        if (this.ids[id] === 0) return;
        this.ids[id] = 0;
        this.inflight--;
        this.acked++;
        // refill in batches (at a quarter of the window free), not one PUBLISH per acknowledgement
        if (mode === 'max' && this.inflight <= (this.window * 3) >> 2) schedulePump();
        if (this.inflight === 0 && ackWaiters.length) { const w = ackWaiters; ackWaiters = []; for (const f of w) f(); }
      }
    });
  }

  canSend(): boolean {
    return this.qos === 0 || this.inflight < this.window;
  }

  sendOne(now: number): void {
    let id = 0;
    if (this.qos > 0) {
      while (this.ids[this.nextId] !== 0) this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1;
      id = this.nextId;
      this.ids[id] = 1;
      this.inflight++;
      this.nextId = id === 65535 ? 1 : id + 1;
    }
    this.conn.queue(this.tpl.make(id, this.stream, this.seq++, now));
    totalPublished++;
  }
}

let pubs: Pub[] = [];

function schedulePump(): void {
  if (pumpScheduled || mode !== 'max') return;
  pumpScheduled = true;
  setImmediate(pump);
}

function pump(): void {
  pumpScheduled = false;
  if (mode !== 'max') return;
  let sent = 0;
  let waitDrain: Pub | undefined;
  const now = hrNow();
  for (const p of pubs) {
    if (p.conn.isClosed) continue;
    if (p.conn.buffered() > 1 << 20) { waitDrain = p; continue; }
    for (let i = 0; i < 32 && p.canSend() && totalPublished - delivered < creditWindow && totalPublished < limit; i++) {
      p.sendOne(now);
      sent++;
    }
  }
  if (sent > 0) schedulePump();
  else if (waitDrain) waitDrain.conn.onDrainOnce(schedulePump);
  // otherwise blocked on acknowledgements or credit: their arrival calls schedulePump
}

function rateTick(): void {
  if (mode !== 'rate') return;
  const now = hrNow();
  let due = Math.floor(((now - rateT0) * rate) / 1e9) - rateSent;
  let i = 0;
  while (due > 0) {
    const p = pubs[rateSent % pubs.length]!;
    if (!p.canSend() || p.conn.isClosed) break;
    p.sendOne(now);
    rateSent++;
    due--;
    if (++i > 10_000) break;
  }
  setTimeout(rateTick, 1);
}

function waitAcked(ms: number): Promise<void> {
  if (pubs.every((p) => p.inflight === 0)) return Promise.resolve();
  return withTimeout(new Promise<void>((resolve) => {
    const check = (): void => { if (pubs.every((p) => p.inflight === 0)) resolve(); else ackWaiters.push(check); };
    ackWaiters.push(check);
  }), ms, 'acknowledgements').catch(() => undefined);
}

// ---- connection storm -------------------------------------------------------------------------

let stormConns: RawPeer[] = [];

// ---- IPC --------------------------------------------------------------------------------------

function marks(): Record<string, unknown> {
  return {
    t: hrNow(), cpu: process.cpuUsage(), published: totalPublished,
    acked: pubs.reduce((a, p) => a + p.acked, 0), uniq: subs.reduce((a, s) => a + s.uniq, 0),
    subs: subs.length, pubs: pubs.length, rssKb: Math.round(process.memoryUsage.rss() / 1024),
  };
}

function subStats(expected: number[]): Record<string, unknown> {
  let lost = 0; let dups = 0; let reordered = 0; let uniq = 0; let subsWithLoss = 0;
  for (const s of subs) {
    const l = s.lostAgainst(expected);
    lost += l;
    if (l > 0) subsWithLoss++;
    dups += s.dups; reordered += s.reordered; uniq += s.uniq;
  }
  return { subs: subs.length, uniq, lost, dups, reordered, subsWithLoss, unexpectedCloses, anomalies };
}

async function awaitSubs(expected: number[], stallMs: number, timeoutMs: number): Promise<void> {
  const want = expected.reduce((a, b) => a + b, 0);
  const t0 = Date.now();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const done = subs.every((s) => s.lostAgainst(expected) === 0);
    if (done) return;
    const u = subs.reduce((a, s) => a + s.uniq, 0);
    if (u !== last) { last = u; lastChange = Date.now(); }
    if (Date.now() - lastChange > stallMs || Date.now() - t0 > timeoutMs) return;
    if (want === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const handlers: Record<string, (m: Msg) => Promise<unknown> | unknown> = {
  async setupSubs(m) {
    const t = m['target'] as Target;
    const ids = m['ids'] as string[];
    const t0 = hrNow();
    let present = 0;
    await pool(ids.length, Number(m['concurrency'] ?? 64), async (i) => {
      const sub = new Sub(ids[i]!);
      if (await openSub(t, sub, m['clean'] as boolean)) present++;
      await subscribe(sub.conn, m['filter'] as string, m['qos'] as 0 | 1 | 2);
      subs.push(sub);
    });
    return { ms: (hrNow() - t0) / 1e6, sessionPresent: present };
  },
  async setupPubs(m) {
    const t = m['target'] as Target;
    const list = m['pubs'] as { clientId: string; stream: number; topic: string }[];
    for (const d of list) {
      const conn = await openConn(t);
      await connect(conn, d.clientId, true);
      pubs.push(new Pub(conn, d.stream, d.topic, m['qos'] as 0 | 1 | 2, Number(m['window'] ?? 256)));
    }
    return { pubs: pubs.length };
  },
  start(m) {
    mode = m['mode'] as 'max' | 'rate';
    creditWindow = Number(m['credit'] ?? Infinity);
    limit = Number(m['limit'] ?? Infinity);
    delivered = 0;
    if (mode === 'rate') {
      rate = Number(m['rate']);
      rateT0 = hrNow();
      rateSent = 0;
      rateTick();
    } else {
      schedulePump();
    }
    return {};
  },
  credit(m) {
    delivered = Number(m['delivered']);
    schedulePump();
    return undefined;
  },
  progress(m) {
    clearInterval(progressTimer);
    progressTimer = undefined;
    lastProgress = -1;
    if (m['on']) {
      progressTimer = setInterval(() => {
        const v = minUniq();
        if (v !== lastProgress) { lastProgress = v; process.send!({ op: 'progress', min: v }); }
      }, 5);
    }
    return {};
  },
  mark(m) {
    if (m['lat'] === 'start') { lat = []; latAt = []; latOn = true; }
    if (m['lat'] === 'stop') latOn = false;
    return marks();
  },
  async publishCount(m) {
    const n = Number(m['n']);
    const t0 = hrNow();
    mode = 'max';
    creditWindow = Infinity;
    limit = totalPublished + n;
    schedulePump();
    while (totalPublished < limit) await new Promise((r) => setTimeout(r, 5));
    await waitAcked(60_000);
    mode = undefined;
    return { ms: (hrNow() - t0) / 1e6, published: pubs.map((p) => p.seq), unacked: pubs.reduce((a, p) => a + p.inflight, 0) };
  },
  async stopPubs() {
    mode = undefined;
    await waitAcked(20_000);
    return { published: pubs.map((p) => [p.stream, p.seq]), acked: pubs.reduce((a, p) => a + p.acked, 0), unacked: pubs.reduce((a, p) => a + p.inflight, 0) };
  },
  async awaitSubs(m) {
    const expected = m['expected'] as number[];
    await awaitSubs(expected, Number(m['stallMs'] ?? 2000), Number(m['timeoutMs'] ?? 30_000));
    const r = subStats(expected);
    if (m['withLatency']) r['lat'] = lat;
    if (m['withLatency'] && latDump) writeFileSync(`${latDump}.${process.pid}.${++latDumps}.json`, JSON.stringify({ lat, latAt }));
    return r;
  },
  offline() {
    for (const s of subs) leave(s.conn);
    return {};
  },
  async drain(m) {
    const t = m['target'] as Target;
    const expected = m['expected'] as number[];
    const t0 = hrNow();
    let present = 0;
    await pool(subs.length, 64, async (i) => { if (await openSub(t, subs[i]!, false)) present++; });
    await awaitSubs(expected, Number(m['stallMs'] ?? 5000), Number(m['timeoutMs'] ?? 120_000));
    const ms = (hrNow() - t0) / 1e6;
    return { ms, sessionPresent: present, ...subStats(expected) };
  },
  async cleanup(m) {
    const t = m['target'] as Target;
    const ids = m['ids'] as string[];
    await pool(ids.length, 64, async (i) => {
      const c = await openConn(t);
      await connect(c, ids[i]!, true);
      leave(c);
    });
    return {};
  },
  async storm(m) {
    const t = m['target'] as Target;
    const n = Number(m['n']);
    const prefix = m['prefix'] as string;
    const qos = m['qos'] as 0 | 1 | 2;
    const errors: string[] = [];
    let ok = 0;
    let failed = 0;
    const t0 = hrNow();
    await pool(n, Number(m['concurrency'] ?? 64), async (i) => {
      try {
        const c = await openConn(t);
        stormConns.push(c);
        await connect(c, `${prefix}-${i}`, true);
        await subscribe(c, `${m['filterPrefix'] as string}/${i}`, qos);
        ok++;
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push((err as Error).message);
      }
    });
    const t1 = hrNow();
    return { t0, t1, ok, failed, errors, open: stormConns.filter((c) => !c.isClosed).length };
  },
  /** Publish `n` retained QoS 0 messages to `${prefix}/0..n-1`, then a QoS 1 one whose PUBACK says all were read. */
  async retainedPublish(m) {
    const n = Number(m['n']);
    const prefix = m['prefix'] as string;
    const conn = await openConn(m['target'] as Target);
    stormConns.push(conn);
    await connect(conn, m['clientId'] as string, true);
    const t0 = hrNow();
    for (let i = 0; i < n; i++) {
      const b = new PublishTemplate(`${prefix}/${i}`, 0).make(0, 0, i, 0);
      b[0]! |= 0x01; // RETAIN
      conn.queue(b);
      if (i % 500 === 499) {
        await new Promise((r) => setImmediate(r));
        while (conn.buffered() > 4 << 20) await new Promise<void>((r) => conn.onDrainOnce(r));
      }
    }
    const acked = new Promise<void>((resolve) => { readInPlace(conn, () => undefined, (type) => { if (type === PUBACK) resolve(); }); });
    conn.queue(new PublishTemplate(`${prefix}-done`, 1).make(1, 0, 0, 0));
    await withTimeout(acked, 60_000, 'PUBACK after the retained messages');
    return { ms: (hrNow() - t0) / 1e6 };
  },
  /** Subscribe to `filter` and count retained PUBLISHes (distinct topics) until `n` arrived. */
  async retainedFetch(m) {
    const n = Number(m['n']);
    const conn = await openConn(m['target'] as Target);
    stormConns.push(conn);
    await connect(conn, m['clientId'] as string, true);
    const topics = new Set<string>();
    let dups = 0;
    let t1 = 0;
    const all = new Promise<void>((resolve) => {
      readInPlace(conn, (flags, b, s) => {
        if ((flags & 1) === 0) return;
        const len = b.readUInt16BE(s);
        const topic = b.toString('utf8', s + 2, s + 2 + len);
        if (topics.has(topic)) dups++;
        topics.add(topic);
        if (topics.size === n) { t1 = hrNow(); resolve(); }
      }, () => undefined);
    });
    const t0 = hrNow();
    await subscribe(conn, m['filter'] as string, 0);
    await withTimeout(all, 60_000, `${n} retained messages`).catch(() => undefined);
    return { ms: t1 ? (t1 - t0) / 1e6 : NaN, received: topics.size, dups };
  },
  stormAlive() {
    return { open: stormConns.filter((c) => !c.isClosed).length };
  },
  async closeAll() {
    mode = undefined;
    clearInterval(progressTimer);
    progressTimer = undefined;
    for (const s of subs) if (s.conn) leave(s.conn);
    for (const p of pubs) leave(p.conn);
    for (const c of stormConns) kill(c);
    subs = []; pubs = []; stormConns = [];
    totalPublished = 0; delivered = 0; lat = []; latOn = false; unexpectedCloses = 0; ackWaiters = []; anomalies = [];
    await new Promise((r) => setTimeout(r, 50));
    return {};
  },
  exit() {
    setTimeout(() => process.exit(0), 10);
    return {};
  },
};

process.on('message', (m: Msg) => {
  const h = handlers[m.op];
  if (!h) { process.send!({ id: m.id, ok: false, error: `unknown op ${m.op}` }); return; }
  Promise.resolve().then(() => h(m)).then(
    (result) => { if (m.id !== undefined) process.send!({ id: m.id, ok: true, result }); },
    (err: unknown) => { if (m.id !== undefined) process.send!({ id: m.id, ok: false, error: (err as Error).message }); },
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ op: 'ready', pid: process.pid });
