// Starts a real broker process on free ports and stops it by PID: the source through tsx
// (src/main.ts, no build step for tests), or the compiled build (dist/main.js) as `npm start` runs it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createTestDatabase } from './database.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BrokerProcess {
  proc: ChildProcess;
  host: string;
  mqttPort: number;
  httpPort: number;
  /** Present when the broker opened them (TLS; client-certificate WebSocket listener). */
  mqttsPort?: number;
  wssPort?: number;
  mqttUrl: string;
  /** WebSocket URL: `/mqtt` (default hub) or `/clients/mqtt/hubs/{hub}`. */
  wsUrl(hub?: string): string;
  /** Every log line (parsed JSON) so far. */
  logs: Array<Record<string, unknown>>;
  /** The primary access key and the Azure connection string the broker printed. */
  accessKey: string;
  connectionString: string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** Reuse this database (e.g. to restart on the same state); default: a fresh database per start. */
  databaseUrl?: string;
  /** Keep the fresh database when this broker exits (to restart another broker on it after a kill). */
  keepDatabase?: boolean;
  /** How long to wait for the broker to listen (default 20 s). */
  readyTimeoutMs?: number;
  /**
   * Give the broker the fixed test access keys (`testKeys`) unless the args or env choose keys;
   * false: pass none (the broker generates a key file in its --data-dir).
   */
  testKeys?: boolean;
  /** Run dist/main.js (compiled first if stale) instead of src/main.ts through tsx. */
  compiled?: boolean;
}

/** The access keys test brokers get (both given, so no key file is written). */
export const testKeys = { primary: 'test-primary-access-key-0123456789', secondary: 'test-secondary-access-key-9876543210' };

/** Compile src/ to dist/ unless the build is current (scripts/build.mjs --if-stale). */
export function buildIfStale(): void {
  const r = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
}

/**
 * Start `src/main.ts` (or `dist/main.js`) with extra CLI args; resolves once it logs its bound
 * ports. Unless the args choose a store or database, the broker gets a fresh PostgreSQL database.
 */
export async function startBroker(args: string[] = [], env: NodeJS.ProcessEnv = {}, opts: StartOptions = {}): Promise<BrokerProcess & { databaseUrl: string | undefined }> {
  let databaseUrl = opts.databaseUrl;
  let dropDatabase: (() => Promise<void>) | undefined;
  if (!databaseUrl && !args.includes('--store') && !args.includes('--database-url')) {
    const db = await createTestDatabase();
    databaseUrl = db.url;
    dropDatabase = db.drop;
  }
  const extra = databaseUrl && !args.includes('--database-url') ? ['--database-url', databaseUrl] : [];
  if (opts.testKeys !== false && !args.includes('--access-key') && env['TERN_ACCESS_KEY'] === undefined) {
    extra.push('--access-key', testKeys.primary, '--secondary-access-key', testKeys.secondary);
  }
  if (opts.compiled) buildIfStale();
  const entry = opts.compiled ? ['dist/main.js'] : ['--import', 'tsx', 'src/main.ts'];
  const proc = spawn(process.execPath, [...entry, '--http-port', '0', '--mqtt-port', '0', ...extra, ...args], {
    cwd: repoRoot,
    env: { ...process.env, TERN_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const lines = createInterface({ input: proc.stdout! });
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const readyMs = opts.readyTimeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`broker did not start in ${readyMs} ms: ${stderr}`));
    }, readyMs);
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry['msg'] === 'tern listening') {
        clearTimeout(timer);
        resolve(entry);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before listening: ${stderr}`));
    });
  });
  const info = await ready;
  const host = String(info['host']);
  const mqttPort = Number(info['mqttPort']);
  const httpPort = Number(info['httpPort']);
  const connectionString = String(logs.find((l) => typeof l['connectionString'] === 'string')?.['connectionString'] ?? '');
  const accessKey = /AccessKey=([^;]+)/.exec(connectionString)?.[1] ?? '';
  const optionalPort = (key: string): { [k: string]: number } => (typeof info[key] === 'number' ? { [key]: info[key] as number } : {});
  const exited = once(proc, 'exit');
  // Drop the database once this broker is gone, unless the test keeps it for a restart.
  if (dropDatabase && !opts.keepDatabase) void exited.then(() => dropDatabase!().catch(() => undefined));
  return {
    proc, host, mqttPort, httpPort, ...optionalPort('mqttsPort'), ...optionalPort('wssPort'), logs, databaseUrl, connectionString, accessKey,
    mqttUrl: `mqtt://${host}:${mqttPort}`,
    wsUrl: (hub?: string) => (hub ? `ws://${host}:${httpPort}/clients/mqtt/hubs/${hub}` : `ws://${host}:${httpPort}/mqtt`),
    stop: async () => {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      return code;
    },
    kill: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** How many log lines of `broker` have a msg containing `text`. */
export function logCount(broker: BrokerProcess, text: string): number {
  return broker.logs.filter((l) => String(l['msg']).includes(text)).length;
}

/** Bounded poll until `broker` has logged `text` more than `before` times. */
export async function waitForLog(broker: BrokerProcess, text: string, before: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (logCount(broker, text) <= before) {
    if (Date.now() > deadline) throw new Error(`no log line "${text}" within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
