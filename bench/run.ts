// Side-by-side benchmark: Tern vs mosquitto vs aedes, one command (`npm run bench`).
// Each scenario starts its brokers on free loopback ports, then runs them interleaved
// (A B C A B C ...) for several rounds; load comes from two generator processes
// (bench/gen-worker.ts) that check every delivery for loss, duplicates and order.
// Writes a markdown table to stdout and bench/results/latest.md, JSON lines to bench/results/latest.jsonl
// (partial.* instead for a narrower run than the full default one).
// Usage: npm run bench [-- --quick] [-- --only fanin,latency] [-- --rounds 3] [-- --seconds 3] [-- --brokers tern,mosquitto] [-- --list]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/postgres/embedded.ts';
import {
  cpuSeconds, ensureMosquitto, rssKb, startAedes, startMosquitto, startTernBroker, type Broker, type BrokerName,
} from './brokers.ts';
import type { Target } from './gen-worker.ts';
import { median, repoRoot, sleep } from './lib.ts';
import { loopDelayMs, scrapeLoopDelay, type LoopDelaySeconds } from './loop-delay.ts';
import { renderMarkdown, type RowSpec, type RunRecord, type ScenarioInfo } from './report.ts';

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    list: { type: 'boolean', default: false },
    brokers: { type: 'string' },
    contenders: { type: 'string' },
  },
});
const quick = opt.quick;
const rounds = Number(opt.rounds ?? (quick ? 1 : 3));
const measureMs = Number(opt.seconds ?? (quick ? 1.5 : 2.5)) * 1000;
const warmupMs = quick ? 500 : 600;
const latencyMs = quick ? 2000 : 10_000;
/** Traffic at the latency rate before its window: every broker past its start-up (Tern's heap still grows, with long young-generation collections, for ~2 s after it starts) */
const latencyWarmupMs = quick ? 500 : 3000;
/** Between the scrape that empties Tern's event-loop-delay histogram and the latency window */
const SCRAPE_SETTLE_MS = 300;
const settleMs = quick ? 1000 : 1200;
const drainN = quick ? 10_000 : 20_000;
const LAT_RATE = 1000;
const SATURATED = 90;
/** CPU % (of one core) used by other processes during a run that makes it noisy: repeated once */
const NOISY = 50;
const NOISY_RETRIES = 1;
const quiet = { info: () => undefined, warn: () => undefined, error: (o: object, m?: string) => console.error(m, o) };
const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };

// ---- generator workers ------------------------------------------------------------------------

type Reply = Record<string, unknown>;

class Gen {
  readonly proc: ChildProcess;
  readonly #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #next = 1;
  onProgress: (min: number) => void = () => undefined;
  readonly ready: Promise<void>;

  constructor(readonly name: string) {
    this.proc = fork(path.join(repoRoot, 'bench/gen-worker.ts'), [], {
      execArgv: ['--import', 'tsx'], cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.ready = new Promise((resolve) => {
      this.proc.on('message', (m: Reply) => {
        if (m['op'] === 'ready') { resolve(); return; }
        if (m['op'] === 'progress') { this.onProgress(m['min'] as number); return; }
        const p = this.#pending.get(m['id'] as number);
        if (!p) return;
        this.#pending.delete(m['id'] as number);
        if (m['ok']) p.resolve((m['result'] ?? {}) as Reply); else p.reject(new Error(`${name}: ${String(m['error'])}`));
      });
    });
    this.proc.on('exit', (c) => { for (const p of this.#pending.values()) p.reject(new Error(`${name} exited with ${c}`)); });
  }

  call(op: string, args: Reply = {}): Promise<Reply> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.proc.send({ op, id, ...args });
    });
  }

  notify(op: string, args: Reply = {}): void {
    this.proc.send({ op, ...args });
  }
}

let A: Gen;
let B: Gen;

// ---- measurement helpers ----------------------------------------------------------------------

interface Sample { t: number; cpu: { user: number; system: number }; published: number; acked: number; uniq: number }

function cpuPct(a: Sample, b: Sample): number {
  return Math.round(((b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system) * 1e3 / (b.t - a.t)) * 100);
}

function machineBusy(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** CPU of the broker (and its PostgreSQL), of the whole machine, between two points. */
class ProcWindow {
  readonly #b: Broker;
  #t0 = 0; #cpu0 = 0; #pg0 = 0; #m0 = machineBusy(); #pids: number[] = [];
  constructor(b: Broker) { this.#b = b; }
  start(): void {
    this.#t0 = performance.now();
    this.#cpu0 = cpuSeconds(this.#b.pid);
    this.#pids = this.#b.extraPids();
    this.#pg0 = this.#pids.reduce((a, p) => a + cpuSeconds(p), 0);
    this.#m0 = machineBusy();
  }
  stop(): { brokerCpu: number; pgCpu: number; machineCpu: number } {
    const s = (performance.now() - this.#t0) / 1000;
    const m = machineBusy();
    const ncpu = os.cpus().length;
    return {
      brokerCpu: Math.round(((cpuSeconds(this.#b.pid) - this.#cpu0) / s) * 100),
      pgCpu: this.#pids.length ? Math.round(((this.#pids.reduce((a, p) => a + cpuSeconds(p), 0) - this.#pg0) / s) * 100) : NaN,
      machineCpu: Math.round(((m.busy - this.#m0.busy) / (m.total - this.#m0.total)) * ncpu * 100),
    };
  }
}

/** Wait (at most `maxMs`) until the machine is nearly idle before a run; returns the time waited. */
async function waitQuiet(maxMs: number): Promise<number> {
  const t0 = performance.now();
  const ncpu = os.cpus().length;
  while (performance.now() - t0 < maxMs) {
    const m0 = machineBusy();
    await sleep(150);
    const m1 = machineBusy();
    if (((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * ncpu * 100 < 35) break;
  }
  return Math.round(performance.now() - t0);
}

/** Samples a percentile needs above it to be reported (p99.9: 5,000 samples, so none in --quick's 2 s window) */
const MIN_TAIL = 5;

function pct(sorted: number[], p: number): number {
  if (sorted.length * (1 - p) < MIN_TAIL) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function target(b: Broker, kind: 'ws' | 'tcp'): Target {
  return { kind, port: kind === 'ws' ? b.wsPort : b.tcpPort, path: b.wsPath };
}

let runCounter = 0;
const runTag = Date.now().toString(36);

interface Contender { label: string; broker: BrokerName; persistent?: boolean }
interface Outcome { metrics: Record<string, number>; genCpu: Record<string, number>; problems: string[]; notes: string[]; extra?: Record<string, unknown> }

/** Judge a run's delivery checks; QoS 0 loss is excused only if the broker itself reported drops. */
async function judge(b: Broker, qos: number, s: { lost: number; dups: number; reordered: number; unexpectedCloses: number; subsWithLoss?: number }, drops0: number | undefined): Promise<{ problems: string[]; notes: string[] }> {
  const problems: string[] = [];
  const notes: string[] = [];
  if (s.lost > 0) {
    let reported: number | undefined;
    if (qos === 0 && drops0 !== undefined) {
      if (b.name === 'mosquitto') await sleep(1300); // $SYS is published every second
      const d1 = b.reportedDrops();
      reported = d1 !== undefined ? d1 - drops0 : undefined;
    }
    if (qos === 0 && reported !== undefined && reported >= s.lost) notes.push(`QoS 0: ${s.lost} dropped, reported by the broker`);
    else problems.push(`lost ${s.lost}${s.subsWithLoss ? ` (${s.subsWithLoss} subscribers)` : ''}${qos === 0 ? `, broker reported ${reported ?? 'no'} drops` : ''}`);
  }
  if (s.reordered > 0) problems.push(`out of order ${s.reordered}`);
  if (s.dups > 0) (qos === 1 ? notes : problems).push(`duplicates ${s.dups}`);
  if (s.unexpectedCloses > 0) problems.push(`${s.unexpectedCloses} connections closed by the broker`);
  return { problems, notes };
}

// ---- scenarios --------------------------------------------------------------------------------

interface ThroughputSpec { transport: 'ws' | 'tcp'; qos: 0 | 1 | 2; pubs: number; subs: number; persistent?: boolean }

async function throughput(b: Broker, spec: ThroughputSpec): Promise<Outcome> {
  const t = target(b, spec.transport);
  const id = `${runTag}-${++runCounter}`;
  const fanIn = spec.pubs > 1;
  const base = `bench/${id}`;
  const filter = fanIn ? `${base}/in/+` : `${base}/out`;
  const subIds = Array.from({ length: spec.subs }, (_, i) => `${id}-s${i}`);
  // Ten or more subscribers are split over both generators; a single one sits alone in B; publishers in A
  const split = spec.subs >= 10;
  const subsA = split ? subIds.slice(0, spec.subs / 2) : [];
  const subsB = split ? subIds.slice(spec.subs / 2) : subIds;
  const hosts: Gen[] = split ? [A, B] : [B];
  const subArgs = { target: t, filter, qos: spec.qos, clean: !spec.persistent };
  const phase: Record<string, number> = {};
  let ph = performance.now();
  const lap = (name: string): void => { const now = performance.now(); phase[name] = Math.round(now - ph); ph = now; };
  await Promise.all([
    subsA.length ? A.call('setupSubs', { ...subArgs, ids: subsA }) : undefined,
    B.call('setupSubs', { ...subArgs, ids: subsB }),
  ]);
  await A.call('setupPubs', {
    target: t, qos: spec.qos, window: 256,
    pubs: Array.from({ length: spec.pubs }, (_, i) => ({ clientId: `${id}-p${i}`, stream: i, topic: fanIn ? `${base}/in/${i}` : `${base}/out` })),
  });
  lap('setup');
  // Closed loop: publishers stay at most `credit` messages ahead of the slowest subscriber: 30,000
  // deliveries pending in all, but at least 100 messages per subscriber (with fewer, Tern idled at
  // 1,000 subscribers: 87% CPU at 30 per subscriber, 105% at 100)
  const credit = fanIn ? 10_000 : Math.max(100, Math.floor(30_000 / spec.subs));
  const latest = new Map<Gen, number>();
  for (const h of hosts) {
    h.onProgress = (min) => {
      latest.set(h, min);
      if (latest.size === hosts.length) A.notify('credit', { delivered: Math.min(...latest.values()) });
    };
  }
  await Promise.all(hosts.map((h) => h.call('progress', { on: true })));
  const drops0 = b.reportedDrops();
  const pw = new ProcWindow(b);
  await A.call('start', { mode: 'max', credit });
  await sleep(warmupMs);
  const [a0, b0] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  pw.start();
  await sleep(measureMs);
  const [a1, b1] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const cpu = pw.stop();
  lap('measure');
  const stop = await A.call('stopPubs');
  lap('stop');
  const expected: number[] = [];
  for (const [stream, n] of stop['published'] as [number, number][]) expected[stream] = n;
  const stats = await Promise.all(hosts.map((h) => h.call('awaitSubs', { expected, stallMs: 3000, timeoutMs: 30_000 })));
  lap('await');
  const sum = (k: string): number => stats.reduce((a, s) => a + (s[k] as number), 0);
  const s = { lost: sum('lost'), dups: sum('dups'), reordered: sum('reordered'), unexpectedCloses: sum('unexpectedCloses'), subsWithLoss: sum('subsWithLoss') };
  const anomalies = stats.flatMap((x) => x['anomalies'] as unknown[]).slice(0, 8);
  for (const h of hosts) h.onProgress = () => undefined;
  await Promise.all([A.call('closeAll'), B.call('closeAll')]);
  if (spec.persistent) {
    await B.call('cleanup', { target: t, ids: subIds });
    await B.call('closeAll');
  }
  lap('close');
  if (process.env['BENCH_PHASES']) log(`phases ${JSON.stringify(phase)}`);
  const rate = (x0: Sample, x1: Sample, k: 'uniq' | 'published'): number => (x1[k] - x0[k]) / ((x1.t - x0.t) / 1e9);
  const delivered = (split ? rate(a0!, a1!, 'uniq') : 0) + rate(b0!, b1!, 'uniq');
  const j = await judge(b, spec.qos, s, drops0);
  const unacked = stop['unacked'] as number;
  if (unacked > 0) j.problems.push(`${unacked} publishes never acknowledged`);
  return {
    metrics: {
      delivered: Math.round(delivered), published: Math.round(rate(a0!, a1!, 'published')),
      messagesPerSub: Math.round(delivered / spec.subs), ...cpu,
      brokerRssKb: rssKb(b.pid), lost: s.lost, dups: s.dups, reordered: s.reordered,
    },
    genCpu: { A: cpuPct(a0!, a1!), B: cpuPct(b0!, b1!) }, ...j, ...(anomalies.length ? { extra: { anomalies } } : {}),
  };
}

async function latency(b: Broker, persistent = false): Promise<Outcome> {
  const t = target(b, 'ws');
  const id = `${runTag}-${++runCounter}`;
  const topic = `bench/${id}/lat`;
  await B.call('setupSubs', { target: t, filter: topic, qos: 1, clean: !persistent, ids: [`${id}-s`] });
  await A.call('setupPubs', { target: t, qos: 1, window: 256, pubs: [{ clientId: `${id}-p`, stream: 0, topic }] });
  await A.call('start', { mode: 'rate', rate: LAT_RATE });
  await sleep(latencyWarmupMs);
  const pw = new ProcWindow(b);
  // The broker's event-loop delay (Tern): this scrape empties its histogram, the one after the window reads it
  const scrape = (): Promise<LoopDelaySeconds | Error> => (b.metricsUrl ? scrapeLoopDelay(b.metricsUrl).catch((e: Error) => e) : Promise.resolve(new Error('n/a')));
  // Scrapes stay out of the latency window: one costs Tern's event loop ~1.4 ms, tens of ms just after start-up (prom-client
  // renders every metric), which taken at the window's edges delayed its first and last messages
  const loop0 = await scrape();
  await sleep(SCRAPE_SETTLE_MS);
  const [a0, b0] = await Promise.all([A.call('mark'), B.call('mark', { lat: 'start' })]);
  pw.start();
  await sleep(latencyMs);
  const [a1, b1] = await Promise.all([A.call('mark'), B.call('mark', { lat: 'stop' })]);
  const cpu = pw.stop();
  const loop1 = await scrape();
  const stop = await A.call('stopPubs');
  const expected = (stop['published'] as [number, number][]).map(([, n]) => n);
  const st = await B.call('awaitSubs', { expected, stallMs: 3000, timeoutMs: 30_000, withLatency: true });
  await Promise.all([A.call('closeAll'), B.call('closeAll')]);
  const lat = (st['lat'] as number[]).map((us) => us / 1000).sort((x, y) => x - y);
  const j = await judge(b, 1, st as unknown as { lost: number; dups: number; reordered: number; unexpectedCloses: number }, undefined);
  if (lat.length < (LAT_RATE * latencyMs) / 1000 * 0.9) j.problems.push(`only ${lat.length} latency samples`);
  const loopErr = [loop0, loop1].find((x) => x instanceof Error);
  if (b.metricsUrl && loopErr) j.notes.push(`broker event-loop delay not read: ${loopErr.message}`);
  const loop = loopErr ? undefined : loop1 as LoopDelaySeconds;
  const [sa0, sb0, sa1, sb1] = [a0, b0, a1, b1] as unknown as [Sample, Sample, Sample, Sample];
  const extra = { ...anomalyExtra(st).extra, ...(loop ? { brokerLoopDelaySeconds: loop } : {}) };
  return {
    metrics: {
      p50: pct(lat, 0.5), p99: pct(lat, 0.99), p999: pct(lat, 0.999), max: lat[lat.length - 1] ?? NaN, samples: lat.length,
      sentRate: Math.round((sa1.published - sa0.published) / ((sa1.t - sa0.t) / 1e9)), ...cpu, lost: st['lost'] as number,
      ...(loop ? loopDelayMs(loop) : {}),
    },
    genCpu: { A: cpuPct(sa0, sa1), B: cpuPct(sb0, sb1) }, ...j, ...(Object.keys(extra).length ? { extra } : {}),
  };
}

function anomalyExtra(st: Reply): { extra?: Record<string, unknown> } {
  const a = st['anomalies'] as unknown[] | undefined;
  return a?.length ? { extra: { anomalies: a } } : {};
}

/** Open `n` idle clean sessions (CONNECT + SUBSCRIBE to a topic of their own), split over both generators. */
async function idleSessions(b: Broker, n: number): Promise<void> {
  const t = target(b, 'ws');
  const id = `${runTag}-${++runCounter}`;
  const half = Math.floor(n / 2);
  const rs = await Promise.all([
    A.call('storm', { target: t, n: half, prefix: `${id}-ia`, filterPrefix: `idle/${id}/a`, qos: 1, concurrency: 64 }),
    B.call('storm', { target: t, n: n - half, prefix: `${id}-ib`, filterPrefix: `idle/${id}/b`, qos: 1, concurrency: 64 }),
  ]);
  const failed = rs.reduce((a, r) => a + (r['failed'] as number), 0);
  if (failed > 0) throw new Error(`${failed} of ${n} idle sessions could not connect`);
}

/** Store `n` retained messages (QoS 0, one topic each), then one new subscriber to their wildcard gets them all. */
async function retained(b: Broker, n: number): Promise<Outcome> {
  const t = target(b, 'ws');
  const id = `${runTag}-${++runCounter}`;
  const pw = new ProcWindow(b);
  pw.start();
  const [a0, b0] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const stored = await A.call('retainedPublish', { target: t, n, prefix: `ret/${id}/t`, clientId: `${id}-p` });
  const fetched = await B.call('retainedFetch', { target: t, n, filter: `ret/${id}/t/+`, clientId: `${id}-s` });
  const [a1, b1] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const cpu = pw.stop();
  await Promise.all([A.call('closeAll'), B.call('closeAll')]);
  const problems: string[] = [];
  const received = fetched['received'] as number;
  if (received < n) problems.push(`lost: ${n - received} of ${n} retained messages not delivered`);
  if ((fetched['dups'] as number) > 0) problems.push(`${fetched['dups'] as number} retained messages delivered twice`);
  return {
    metrics: {
      storePerSec: Math.round(n / ((stored['ms'] as number) / 1000)), fetchPerSec: Math.round(n / ((fetched['ms'] as number) / 1000)),
      received, ...cpu,
    },
    genCpu: { A: cpuPct(a0!, a1!), B: cpuPct(b0!, b1!) }, problems, notes: [],
  };
}

async function storm(b: Broker, n: number): Promise<Outcome> {
  const t = target(b, 'ws');
  const id = `${runTag}-${++runCounter}`;
  // Warm-up: 20 connections, closed again, so that what a broker allocates once on first use
  // (code, lookup tables) is not counted as memory per connection
  await A.call('storm', { target: t, n: 20, prefix: `${id}-w`, filterPrefix: `storm/${id}/w`, qos: 1, concurrency: 4 });
  await A.call('closeAll');
  await sleep(500);
  const rss0 = rssKb(b.pid);
  const pw = new ProcWindow(b);
  pw.start();
  const [a0, b0] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const half = Math.floor(n / 2);
  const [ra, rb] = await Promise.all([
    A.call('storm', { target: t, n: half, prefix: `${id}-a`, filterPrefix: `storm/${id}/a`, qos: 1, concurrency: 64 }),
    B.call('storm', { target: t, n: n - half, prefix: `${id}-b`, filterPrefix: `storm/${id}/b`, qos: 1, concurrency: 64 }),
  ]);
  const [a1, b1] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const cpu = pw.stop();
  const t0 = Math.min(ra!['t0'] as number, rb!['t0'] as number);
  const t1 = Math.max(ra!['t1'] as number, rb!['t1'] as number);
  const ok = (ra!['ok'] as number) + (rb!['ok'] as number);
  const failed = (ra!['failed'] as number) + (rb!['failed'] as number);
  await sleep(settleMs);
  const rss1 = rssKb(b.pid);
  const [sa, sb] = await Promise.all([A.call('stormAlive'), B.call('stormAlive')]);
  const alive = (sa!['open'] as number) + (sb!['open'] as number);
  await Promise.all([A.call('closeAll'), B.call('closeAll')]);
  const problems: string[] = [];
  if (failed > 0) problems.push(`${failed} of ${n} connections failed: ${[...(ra!['errors'] as string[]), ...(rb!['errors'] as string[])].slice(0, 3).join('; ')}`);
  if (alive < ok) problems.push(`${ok - alive} connections dropped while idle`);
  return {
    metrics: {
      connPerSec: Math.round(ok / ((t1 - t0) / 1e9)), seconds: (t1 - t0) / 1e9, ok, failed,
      rssBeforeKb: rss0, rssAfterKb: rss1, kbPerConn: ok ? (rss1 - rss0) / ok : NaN, ...cpu,
    },
    genCpu: { A: cpuPct(a0!, a1!), B: cpuPct(b0!, b1!) }, problems, notes: [],
  };
}

async function drain(b: Broker): Promise<Outcome> {
  const t = target(b, 'ws');
  const id = `${runTag}-${++runCounter}`;
  const topic = `bench/${id}/q`;
  const subId = `${id}-s`;
  await B.call('setupSubs', { target: t, filter: topic, qos: 1, clean: false, ids: [subId] });
  await B.call('offline');
  await sleep(300);
  await A.call('setupPubs', { target: t, qos: 1, window: 256, pubs: [{ clientId: `${id}-p`, stream: 0, topic }] });
  const pw = new ProcWindow(b);
  pw.start();
  const [a0, b0] = await Promise.all([A.call('mark'), B.call('mark')]) as unknown as Sample[];
  const q = await A.call('publishCount', { n: drainN });
  const [a1] = await Promise.all([A.call('mark')]) as unknown as Sample[];
  const cpuQueue = pw.stop();
  const expected = q['published'] as number[];
  await sleep(300);
  pw.start();
  const d = await B.call('drain', { target: t, expected, stallMs: 5000, timeoutMs: 120_000 });
  const [b1] = await Promise.all([B.call('mark')]) as unknown as Sample[];
  const cpuDrain = pw.stop();
  await Promise.all([A.call('closeAll'), B.call('closeAll')]);
  await B.call('cleanup', { target: t, ids: [subId] });
  await B.call('closeAll');
  const j = await judge(b, 1, d as unknown as { lost: number; dups: number; reordered: number; unexpectedCloses: number }, undefined);
  if ((d['sessionPresent'] as number) !== 1) j.problems.push('session present was 0 on reconnect');
  if ((q['unacked'] as number) > 0) j.problems.push(`${String(q['unacked'])} publishes never acknowledged`);
  const drainMs = d['ms'] as number;
  return {
    metrics: {
      drainPerSec: Math.round((drainN / drainMs) * 1000), drainMs: Math.round(drainMs), queuePerSec: Math.round((drainN / (q['ms'] as number)) * 1000),
      brokerCpuQueue: cpuQueue.brokerCpu, brokerCpu: cpuDrain.brokerCpu, pgCpu: cpuDrain.pgCpu, pgCpuQueue: cpuQueue.pgCpu,
      machineCpu: cpuDrain.machineCpu, lost: d['lost'] as number, dups: d['dups'] as number,
    },
    genCpu: { A: cpuPct(a0!, a1!), B: cpuPct(b0!, b1!) }, ...j, ...anomalyExtra(d),
  };
}

interface Scenario extends ScenarioInfo {
  brokers: 'memory' | 'postgres';
  /** start a fresh broker for every run (memory measurements) */
  fresh?: boolean;
  contenders: Contender[];
  run(b: Broker, c: Contender): Promise<Outcome>;
}

const TRIO: Contender[] = [{ label: 'tern', broker: 'tern' }, { label: 'mosquitto', broker: 'mosquitto' }, { label: 'aedes', broker: 'aedes' }];
const rowDelivered = { key: 'delivered', metric: 'delivered msg/s', better: 'higher' as const };

function tp(name: string, title: string, spec: ThroughputSpec): Scenario {
  return { name, title, brokers: 'memory', contenders: TRIO, rows: [rowDelivered], run: (b) => throughput(b, spec) };
}

/** Throughput to persistent subscribers (Tern on PostgreSQL), plus non-persistent ones on the same Tern: what durability costs */
function durable(name: string, title: string, spec: ThroughputSpec, nonPersistentLabel: string): Scenario {
  return {
    name, title: `${title}, WebSocket (Tern on PostgreSQL: PUBACK after commit)`, brokers: 'postgres',
    contenders: [...TRIO.map((c) => ({ ...c, persistent: true })), { label: nonPersistentLabel, broker: 'tern', persistent: false }],
    rows: [rowDelivered],
    run: (b, c) => throughput(b, { ...spec, persistent: c.persistent }),
  };
}

const latencyRows: RowSpec[] = [
  { key: 'p50', metric: 'p50 ms', better: 'lower' }, { key: 'p99', metric: 'p99 ms', better: 'lower' }, { key: 'p999', metric: 'p99.9 ms', better: 'lower' },
  { key: 'loopP50', metric: 'broker event-loop delay p50 ms', better: 'lower', ternOnly: true },
  { key: 'loopP99', metric: 'broker event-loop delay p99 ms', better: 'lower', ternOnly: true },
  { key: 'loopMax', metric: 'broker event-loop delay max ms', better: 'lower', ternOnly: true },
];

const scenarios: Scenario[] = [
  tp('fanin-q0-ws', 'fan-in 4→1, QoS 0, WebSocket', { transport: 'ws', qos: 0, pubs: 4, subs: 1 }),
  tp('fanin-q1-ws', 'fan-in 4→1, QoS 1, WebSocket', { transport: 'ws', qos: 1, pubs: 4, subs: 1 }),
  tp('fanin-q2-ws', 'fan-in 4→1, QoS 2, WebSocket', { transport: 'ws', qos: 2, pubs: 4, subs: 1 }),
  tp('fanin-q0-tcp', 'fan-in 4→1, QoS 0, TCP', { transport: 'tcp', qos: 0, pubs: 4, subs: 1 }),
  tp('fanout10-q0-ws', 'fan-out 1→10, QoS 0, WebSocket', { transport: 'ws', qos: 0, pubs: 1, subs: 10 }),
  tp('fanout100-q0-ws', 'fan-out 1→100, QoS 0, WebSocket', { transport: 'ws', qos: 0, pubs: 1, subs: 100 }),
  tp('fanout1000-q0-ws', 'fan-out 1→1000, QoS 0, WebSocket', { transport: 'ws', qos: 0, pubs: 1, subs: 1000 }),
  tp('fanout100-q1-ws', 'fan-out 1→100, QoS 1, WebSocket', { transport: 'ws', qos: 1, pubs: 1, subs: 100 }),
  tp('fanout1000-q1-ws', 'fan-out 1→1000, QoS 1, WebSocket', { transport: 'ws', qos: 1, pubs: 1, subs: 1000 }),
  {
    name: 'fanin-q1-ws-idle10k', title: 'fan-in 4→1, QoS 1, WebSocket, next to 10,000 idle subscribed sessions', brokers: 'memory', contenders: TRIO,
    rows: [rowDelivered],
    run: async (b) => {
      await idleSessions(b, 10_000);
      return throughput(b, { transport: 'ws', qos: 1, pubs: 4, subs: 1 });
    },
  },
  ...[10_000, 100_000].map((n): Scenario => ({
    name: `retained${n / 1000}k-ws`,
    title: `${n.toLocaleString('en')} retained messages stored, then sent to one new wildcard subscriber, WebSocket (Tern on PostgreSQL, its retained table emptied before each run)`,
    brokers: 'postgres', fresh: true, contenders: TRIO,
    rows: [{ key: 'storePerSec', metric: 'retained stored msg/s', better: 'higher' }, { key: 'fetchPerSec', metric: 'retained delivered on SUBSCRIBE msg/s', better: 'higher' }],
    run: (b) => retained(b, n),
  })),
  {
    name: 'latency-q1-ws', title: `end-to-end latency, QoS 1 at ${LAT_RATE} msg/s, WebSocket`, brokers: 'memory', contenders: TRIO,
    rows: latencyRows,
    run: (b) => latency(b),
  },
  {
    name: 'latency-q1-durable-ws', title: `end-to-end latency, QoS 1 at ${LAT_RATE} msg/s to a persistent subscriber, WebSocket (Tern on PostgreSQL: PUBACK after commit)`,
    brokers: 'postgres', contenders: TRIO.map((c) => ({ ...c, persistent: true })),
    rows: latencyRows,
    run: (b, c) => latency(b, c.persistent),
  },
  ...[5000, 10_000].map((n): Scenario => ({
    name: `storm${n / 1000}k-ws`, title: `connect storm ${n.toLocaleString('en')} WebSocket CONNECT+SUBSCRIBE`, brokers: 'memory', fresh: true, contenders: TRIO,
    rows: [{ key: 'connPerSec', metric: 'connections/s', better: 'higher' }, { key: 'kbPerConn', metric: 'RSS KiB per idle connection', better: 'lower' }],
    run: (b) => storm(b, n),
  })),
  {
    name: 'drain-q1-ws', title: `offline queue drain, ${drainN.toLocaleString('en')} QoS 1 to a persistent session, WebSocket (Tern on PostgreSQL)`, brokers: 'postgres', contenders: TRIO,
    rows: [{ key: 'drainPerSec', metric: 'drain msg/s', better: 'higher' }, { key: 'queuePerSec', metric: 'queueing msg/s (subscriber offline)', better: 'higher' }],
    run: (b) => drain(b),
  },
  durable('durable-fanin-q1-ws', 'fan-in 4→1, QoS 1, persistent subscriber', { transport: 'ws', qos: 1, pubs: 4, subs: 1 }, 'tern non-persistent sub'),
  durable('durable-fanout100-q1-ws', 'fan-out 1→100, QoS 1, persistent subscribers', { transport: 'ws', qos: 1, pubs: 1, subs: 100 }, 'tern non-persistent subs'),
];

// ---- main -------------------------------------------------------------------------------------

function machineInfo(mosquittoVersion: string): Record<string, unknown> {
  const mem = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
  const pkg = (name: string): string => {
    try { return (JSON.parse(readFileSync(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version; } catch { return '?'; }
  };
  let osName = os.type();
  try { osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName; } catch { /* keep */ }
  return {
    nproc: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? '?', memTotalMiB: mem ? Math.round(Number(mem) / 1024) : undefined,
    os: osName, kernel: os.release(), node: process.version, mosquitto: mosquittoVersion, aedes: pkg('aedes'), ws: pkg('ws'),
    mqttPacket: pkg('mqtt-packet'), loadavgAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

async function startBroker(name: BrokerName, kind: 'memory' | 'postgres', workDir: string, db: { url: string; dir: string } | undefined, fresh: boolean): Promise<Broker> {
  if (name === 'mosquitto') return startMosquitto(workDir);
  if (name === 'aedes') return startAedes();
  // A fresh Tern on PostgreSQL starts without the retained messages of the runs before it (as the others do)
  if (kind === 'postgres' && fresh) await emptyRetained(db!.url);
  return startTernBroker(kind === 'postgres' ? { databaseUrl: db!.url, pgDataDir: db!.dir } : {});
}

async function emptyRetained(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    // 42P01: no such table yet (the broker has not migrated this database)
    await c.query('TRUNCATE retained_messages').catch((e: { code?: string }) => { if (e.code !== '42P01') throw e; });
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  if (opt.list) {
    const w = Math.max(...scenarios.map((s) => s.name.length));
    for (const s of scenarios) console.log(`${s.name.padEnd(w)}  ${s.title}`);
    return;
  }
  const wanted = opt.only?.split(',').map((x) => x.trim()).filter(Boolean);
  const selected = scenarios.filter((s) => !wanted || wanted.some((w) => s.name === w || s.name.startsWith(w)));
  if (!selected.length) throw new Error(`--only ${opt.only}: no such scenario (see --list)`);
  const t0 = Date.now();
  const mosquittoVersion = ensureMosquitto(log);
  const machine = machineInfo(mosquittoVersion);
  const args = process.argv.slice(2).join(' ');
  const command = process.env['npm_lifecycle_event'] === 'bench' ? `npm run bench${args ? ` -- ${args}` : ''}` : `node --import tsx bench/run.ts${args ? ` ${args}` : ''}`;
  const settings = { rounds, measureMs, warmupMs, latencyMs, latencyWarmupMs, settleMs, drainN, latencyRate: LAT_RATE };
  log(`${command}: ${selected.map((s) => s.name).join(', ')}; ${rounds} round(s), ${measureMs} ms windows`);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tern-sbs-'));
  let db: (EmbeddedDatabase & { dir: string }) | undefined;
  let dbDir: string | undefined;
  const records: RunRecord[] = [];
  const discarded: (RunRecord & { discarded: string })[] = [];
  const running = new Set<Broker>();
  A = new Gen('gen-A');
  B = new Gen('gen-B');
  const cleanup = async (): Promise<void> => {
    for (const b of running) await b.stop().catch(() => undefined);
    running.clear();
    await Promise.all([A, B].map((g) => g.call('exit').catch(() => undefined)));
    await db?.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
    if (dbDir) rmSync(dbDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)); });
  try {
    await Promise.all([A.ready, B.ready]);
    if (selected.some((s) => s.brokers === 'postgres')) {
      // its own temporary directory: the postgres system user must be able to reach it
      const dir = mkdtempSync(path.join(os.tmpdir(), 'tern-sbs-db-'));
      dbDir = dir;
      const e = await startEmbeddedPostgres({ dataDir: dir, logger: quiet });
      db = { ...e, dir };
    }
    const onlyBrokers = opt.brokers?.split(',').map((x) => x.trim());
    const onlyContenders = opt.contenders?.split(',').map((x) => x.trim());
    for (const sc of selected) {
      if (onlyBrokers) sc.contenders = sc.contenders.filter((c) => onlyBrokers.includes(c.broker));
      if (onlyContenders) sc.contenders = sc.contenders.filter((c) => onlyContenders.includes(c.label));
      if (!sc.contenders.length) continue;
      const names = [...new Set(sc.contenders.map((c) => c.broker))];
      const start = (n: BrokerName): Promise<Broker> => startBroker(n, sc.brokers, workDir, db, sc.fresh === true);
      let brokers = new Map<BrokerName, Broker>();
      if (!sc.fresh) {
        const started = await Promise.allSettled(names.map(async (n) => { const b = await start(n); running.add(b); return [n, b] as const; }));
        const bad = started.find((x): x is PromiseRejectedResult => x.status === 'rejected');
        if (bad) {
          // Record the failure and go on with the next scenario rather than lose the whole run
          const msg = `broker did not start: ${(bad.reason as Error).message}`;
          log(`${sc.name}: ${msg}`);
          for (const c of sc.contenders) records.push({ type: 'run', scenario: sc.name, contender: c.label, broker: c.broker, round: 0, load1: os.loadavg()[0]!, metrics: {}, genCpu: {}, problems: [msg], notes: [] });
          for (const x of started) if (x.status === 'fulfilled') { await x.value[1].stop(); running.delete(x.value[1]); }
          continue;
        }
        brokers = new Map(started.map((x) => (x as PromiseFulfilledResult<readonly [BrokerName, Broker]>).value));
      }
      for (let r = 0; r < rounds; r++) {
        for (const c of sc.contenders) {
          // A run during which other processes took half a core or more is repeated once
          for (let attempt = 0; attempt <= NOISY_RETRIES; attempt++) {
            let b = brokers.get(c.broker);
            if (sc.fresh) {
              try {
                b = await start(c.broker);
                running.add(b);
              } catch (err) {
                records.push({ type: 'run', scenario: sc.name, contender: c.label, broker: c.broker, round: r + 1, load1: os.loadavg()[0]!, metrics: {}, genCpu: {}, problems: [`broker did not start: ${(err as Error).message}`], notes: [] });
                break;
              }
            }
            const quietWaitMs = await waitQuiet(4000);
            const load1 = os.loadavg()[0]!;
            const runT0 = performance.now();
            let rec: RunRecord;
            try {
              const o = await sc.run(b!, c);
              rec = { type: 'run', scenario: sc.name, contender: c.label, broker: b!.label, round: r + 1, load1, ...o };
            } catch (err) {
              rec = { type: 'run', scenario: sc.name, contender: c.label, broker: b!.label, round: r + 1, load1, metrics: {}, genCpu: {}, problems: [`error: ${(err as Error).message}`], notes: [] };
              await Promise.all([A.call('closeAll'), B.call('closeAll')]).catch(() => undefined);
            }
            rec.wallMs = Math.round(performance.now() - runT0);
            rec.quietWaitMs = quietWaitMs;
            if (b!.notes.length) rec.brokerLog = [...b!.notes];
            if (rec.metrics['machineCpu'] !== undefined) {
              // CPU used on this machine by processes that are not part of this run (other users' jobs)
              const ours = (rec.metrics['brokerCpu'] ?? 0) + (Number.isNaN(rec.metrics['pgCpu']) ? 0 : rec.metrics['pgCpu'] ?? 0) + Object.values(rec.genCpu).reduce((x, y) => x + y, 0);
              rec.metrics['otherCpu'] = Math.max(0, rec.metrics['machineCpu'] - ours);
              if (rec.metrics['otherCpu'] >= NOISY) rec.notes.push(`other processes used ${rec.metrics['otherCpu']}% CPU`);
            }
            const sat = Object.entries(rec.genCpu).filter(([, v]) => v >= SATURATED).map(([k, v]) => `${k} ${v}%`);
            if (sat.length) rec.notes.push(`generator saturated: ${sat.join(', ')}`);
            const noisy = (rec.metrics['otherCpu'] ?? 0) >= NOISY && attempt < NOISY_RETRIES;
            if (noisy) discarded.push({ ...rec, discarded: `other processes used ${rec.metrics['otherCpu']}% CPU; repeated` });
            else records.push(rec);
            const head = sc.rows.map((x) => `${x.key}=${fmt(rec.metrics[x.key])}`).join(' ');
            log(`${sc.name} r${r + 1} ${c.label.padEnd(24)} ${head} gen=${JSON.stringify(rec.genCpu)} ${(rec.wallMs / 1000).toFixed(1)}s broker=${rec.metrics['brokerCpu'] ?? '-'}% other=${rec.metrics['otherCpu'] ?? '-'}% ${rec.problems.length ? `FAILED: ${rec.problems.join('; ')}` : ''} ${rec.notes.join('; ')}${noisy ? ' (discarded, repeating)' : ''}`);
            if (sc.fresh) { await b!.stop(); running.delete(b!); }
            if (!noisy) break;
          }
        }
      }
      for (const b of brokers.values()) { await b.stop(); running.delete(b); }
    }
  } finally {
    await cleanup();
  }
  const elapsedS = Math.round((Date.now() - t0) / 1000);
  const md = renderMarkdown({ command, machine, settings, elapsedS, scenarios: selected, records, discarded: discarded.length, when: new Date().toISOString() });
  const outDir = path.join(repoRoot, 'bench/results');
  mkdirSync(outDir, { recursive: true });
  // A run of everything with the default settings replaces latest.*, which the README quotes;
  // any narrower run (--only, --brokers, --contenders, --quick, --rounds, --seconds) goes to partial.*
  const full = !opt.only && !opt.brokers && !opt.contenders && !opt.quick && !opt.rounds && !opt.seconds;
  const base = full ? 'latest' : 'partial';
  writeFileSync(path.join(outDir, `${base}.md`), md);
  const jsonl = [
    { type: 'meta', when: new Date().toISOString(), command, cwd: repoRoot, argv: process.argv, machine, settings, elapsedS },
    ...records,
    ...discarded.map((d) => ({ ...d, type: 'discarded-run' })),
    ...summaries(selected, records),
  ].map((x) => JSON.stringify(x)).join('\n');
  writeFileSync(path.join(outDir, `${base}.jsonl`), `${jsonl}\n`);
  process.stdout.write(md);
}

function fmt(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '-';
  return Math.abs(v) >= 100 ? String(Math.round(v)) : v.toFixed(2);
}

function summaries(selected: Scenario[], records: RunRecord[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const sc of selected) {
    for (const row of sc.rows) {
      const med: Record<string, number> = {};
      for (const c of sc.contenders) {
        const xs = records.filter((r) => r.scenario === sc.name && r.contender === c.label && r.metrics[row.key] !== undefined).map((r) => r.metrics[row.key]!);
        if (xs.length) med[c.label] = median(xs);
      }
      const failed = records.filter((r) => r.scenario === sc.name && r.problems.length).map((r) => `${r.contender} r${r.round}`);
      out.push({
        type: 'summary', scenario: sc.name, metric: row.metric, better: row.better, medians: med,
        ternOverMosquitto: med['tern'] !== undefined && med['mosquitto'] ? med['tern'] / med['mosquitto'] : undefined,
        ternOverAedes: med['tern'] !== undefined && med['aedes'] ? med['tern'] / med['aedes'] : undefined, failed,
      });
    }
  }
  return out;
}

await main();
