// The three brokers of the side-by-side benchmark, each started by us on free loopback ports with
// a WebSocket and a TCP listener: Tern (dist/main.js via startTern), mosquitto (Debian package,
// generated config) and aedes (bench/aedes-server.mjs). Plus /proc readers for CPU and RSS.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { RawPeer } from '../test/helpers/raw-peer.ts';
import { loopbackTarget, repoRoot, sleep, startTern } from './lib.ts';

export type BrokerName = 'tern' | 'mosquitto' | 'aedes';

export interface Broker {
  name: BrokerName;
  /** e.g. "tern (memory)", "tern (postgres)" */
  label: string;
  pid: number;
  wsPort: number;
  tcpPort: number;
  wsPath: string;
  startMs: number;
  /** Messages the broker itself says it dropped so far (log lines, $SYS counters); undefined if it cannot say. */
  reportedDrops(): number | undefined;
  /** Processes whose CPU counts as this broker's besides `pid` (the embedded PostgreSQL). */
  extraPids(): number[];
  /** Error/warning log lines seen so far (first 20). */
  notes: string[];
  /** Prometheus text exposition of the broker's own metrics (Tern only). */
  metricsUrl?: string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${ms} ms`);
    await sleep(50);
  }
}

async function stopProc(proc: ChildProcess, ms = 10_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const t = setTimeout(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); }, ms);
  await exited;
  clearTimeout(t);
}

/** mosquitto from Debian: install it if missing (apt-get update only if the install fails). Returns its version. */
export function ensureMosquitto(log: (s: string) => void): string {
  const have = (): boolean => spawnSync('sh', ['-c', 'command -v mosquitto || test -x /usr/sbin/mosquitto'], { stdio: 'ignore' }).status === 0;
  if (!have()) {
    log('mosquitto not found: apt-get install -y mosquitto');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', 'mosquitto'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (r.status !== 0) {
      log('install failed: apt-get update, then install again');
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      r = spawnSync('apt-get', ['install', '-y', 'mosquitto'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    }
    if (r.status !== 0 || !have()) throw new Error('could not install mosquitto with apt-get');
  }
  const out = spawnSync(mosquittoBin(), ['-h'], { encoding: 'utf8' });
  return /mosquitto version (\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown';
}

function mosquittoBin(): string {
  try { return execFileSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).trim() || '/usr/sbin/mosquitto'; } catch { return '/usr/sbin/mosquitto'; }
}

export async function startMosquitto(workDir: string): Promise<Broker> {
  const t0 = performance.now();
  const [tcpPort, wsPort] = [await freePort(), await freePort()];
  const conf = path.join(workDir, `mosquitto-${wsPort}.conf`);
  writeFileSync(conf, [
    'per_listener_settings false',
    'allow_anonymous true',
    'persistence false',
    // Queue and in-flight limits out of the way (Tern: 100,000 queued, 1024 in flight per client)
    'max_queued_messages 10000000',
    'max_queued_bytes 0',
    'max_inflight_messages 1024',
    'max_inflight_bytes 0',
    'memory_limit 0',
    'sys_interval 1',
    'connection_messages false',
    'set_tcp_nodelay true', // as Tern and aedes (noDelay) do
    'log_dest stdout',
    'log_type error',
    'log_type warning',
    `listener ${tcpPort} 127.0.0.1`,
    `listener ${wsPort} 127.0.0.1`,
    'protocol websockets',
    '',
  ].join('\n'));
  const proc = spawn(mosquittoBin(), ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const notes: string[] = [];
  for (const s of [proc.stdout!, proc.stderr!]) createInterface({ input: s }).on('line', (l) => { if (notes.length < 20) notes.push(l); });
  const exited = new Promise<never>((_, reject) => proc.once('exit', (c) => reject(new Error(`mosquitto exited with ${c}: ${notes.join(' | ')}`))));
  await Promise.race([Promise.all([waitPort(tcpPort, 10_000), waitPort(wsPort, 10_000)]), exited]);
  exited.catch(() => undefined);
  const startMs = performance.now() - t0;
  // $SYS/broker/publish/messages/dropped: mosquitto's own count of messages it dropped
  let dropped: number | undefined;
  const mon = await RawPeer.open(loopbackTarget(tcpPort, wsPort), 'tcp', 4, { log: false });
  mon.on((p) => { if (p.cmd === 'publish') dropped = Number(String(p.payload)); });
  await mon.connect({ clientId: `bench-sys-${wsPort}` });
  await mon.subscribe('$SYS/broker/publish/messages/dropped', 0);
  return {
    name: 'mosquitto', label: 'mosquitto', pid: proc.pid!, wsPort, tcpPort, wsPath: '/mqtt', startMs, notes,
    reportedDrops: () => dropped, extraPids: () => [],
    stop: async () => { mon.destroy(); await stopProc(proc); },
  };
}

export async function startAedes(): Promise<Broker> {
  const t0 = performance.now();
  const proc = spawn(process.execPath, [path.join(repoRoot, 'bench/aedes-server.mjs')], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const notes: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => { if (notes.length < 20) notes.push(l); });
  const info = await new Promise<{ wsPort: number; tcpPort: number }>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`aedes exited with ${c}: ${notes.join(' | ')}`)));
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      try { const j = JSON.parse(l) as { msg?: string; wsPort: number; tcpPort: number }; if (j.msg === 'aedes listening') resolve(j); } catch { /* not JSON */ }
    });
  });
  return {
    name: 'aedes', label: 'aedes', pid: proc.pid!, wsPort: info.wsPort, tcpPort: info.tcpPort, wsPath: '/mqtt',
    startMs: performance.now() - t0, notes, reportedDrops: () => undefined, extraPids: () => [],
    stop: () => stopProc(proc),
  };
}

/** Tern with `--store memory`, or on PostgreSQL at `databaseUrl` (`pgDataDir`: the embedded cluster, for its CPU). */
export async function startTernBroker(opts: { databaseUrl?: string; pgDataDir?: string }): Promise<Broker> {
  const notes: string[] = [];
  let drops = 0;
  const onLine = (l: string): void => {
    let j: { level?: number; msg?: string; dropped?: number };
    try { j = JSON.parse(l) as typeof j; } catch { return; }
    if (j.msg === 'session queue full; message dropped') drops = Math.max(drops, j.dropped ?? drops + 1);
    if ((j.level ?? 0) >= 40 && !String(j.msg).startsWith('state is kept in memory only') && notes.length < 20) notes.push(l.slice(0, 400));
  };
  // Every generator connection comes from 127.0.0.1: the per-address limits that protect a public
  // broker (1,000 connections, 200/s) would refuse the idle-session and connect-storm scenarios
  const limits = ['--max-connections-per-address', '1000000', '--connection-rate', '1000000', '--connection-burst', '1000000'];
  const args = [...(opts.databaseUrl ? ['--database-url', opts.databaseUrl] : ['--store', 'memory']), ...limits];
  const b = await startTern(args, { onLine });
  return {
    name: 'tern', label: opts.databaseUrl ? 'tern (postgres)' : 'tern (memory)', pid: b.proc.pid!,
    wsPort: b.httpPort, tcpPort: b.mqttPort, wsPath: '/mqtt', startMs: b.startMs, notes, metricsUrl: `http://127.0.0.1:${b.httpPort}/metrics`,
    // Only queue overflows are logged; QoS 0 messages dropped for a full socket buffer are counted internally, not reported
    reportedDrops: () => drops,
    extraPids: () => (opts.pgDataDir ? postgresPids(opts.pgDataDir) : []),
    stop: () => stopProc(b.proc),
  };
}

// ---- /proc ------------------------------------------------------------------------------------

const CLK_TCK = 100;

/** CPU seconds (user + system) used by a process so far; 0 if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch { return 0; }
}

export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

function ppid(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
  } catch { return -1; }
}

/** The postmaster of the cluster in `<dataDir>/pg` and its children (backends, writer, ...). */
export function postgresPids(dataDir: string): number[] {
  let master: number;
  try { master = Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]); } catch { return []; }
  const out = [master];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (ppid(Number(d)) === master) out.push(Number(d));
  }
  return out;
}
