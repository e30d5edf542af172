// Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the embedded PostgreSQL runs
// in its own session, so the broker shuts down first (committing what it acknowledged) and stops it after.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { isAlive, readPidFile } from '../../src/postgres/postmaster.ts';
import { repoRoot } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';

interface Broker { proc: ChildProcess; logs: Array<Record<string, unknown>>; mqttPort: number; exited: Promise<unknown[]> }

/** The broker on its embedded default, as a terminal would start it: its own process group. */
async function startTerminalBroker(dataDir: string): Promise<Broker> {
  const env: NodeJS.ProcessEnv = { ...process.env, TERN_LOG_LEVEL: 'info' };
  delete env['DATABASE_URL'];
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--http-port', '0', '--mqtt-port', '0', '--data-dir', dataDir], {
    cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(proc, 'exit');
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const logs: Array<Record<string, unknown>> = [];
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not listen in 50 s: ${stderr}`)), 50_000);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try { logs.push(JSON.parse(line) as Record<string, unknown>); } catch { return; }
      if (logs.at(-1)!['msg'] === 'tern listening') { clearTimeout(timer); resolve(logs.at(-1)!); }
    });
    void exited.then(() => { clearTimeout(timer); reject(new Error(`broker exited before listening: ${stderr}`)); });
  });
  const info = await listening;
  return { proc, logs, mqttPort: Number(info['mqttPort']), exited };
}

describe('embedded postgres: Ctrl-C', () => {
  let dir: string;
  const running = new Set<Broker>();
  before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'tern-ctrl-c-')); });
  after(async () => {
    for (const b of running) if (b.proc.exitCode === null && b.proc.signalCode === null) process.kill(-b.proc.pid!, 'SIGKILL');
    const file = readPidFile(path.join(dir, 'data', 'pg'));
    if (file && isAlive(file.pid)) process.kill(file.pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test('SIGINT to the broker\'s process group: the broker shuts down cleanly, then stops PostgreSQL; what it acknowledged is there after a restart', async () => {
    const dataDir = path.join(dir, 'data');
    const broker = await startTerminalBroker(dataDir);
    running.add(broker);
    const pgPid = readPidFile(path.join(dataDir, 'pg'))!.pid;
    const topic = `ctrl-c/${uniqueId()}`;
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: uniqueId() });
    for (let i = 0; i < 20; i++) await publisher.publishAsync(`${topic}/${i}`, `m${i}`, { qos: 1, retain: true });
    // A subscriber with a session that outlives its connection (written at SUBSCRIBE)
    const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, {
      protocolVersion: 5, reconnectPeriod: 0, clientId: 'ctrl-c-sub', clean: false, properties: { sessionExpiryInterval: 3600 },
    });
    await subscriber.subscribeAsync(`${topic}/#`, { qos: 1 });
    const closed = Promise.all([publisher, subscriber].map((c) => new Promise<void>((resolve) => c.once('close', () => resolve()))));

    process.kill(-broker.proc.pid!, 'SIGINT'); // what a terminal does on Ctrl-C
    const [code, signal] = await broker.exited as [number | null, string | null];
    running.delete(broker);
    await closed;
    publisher.end(true);
    subscriber.end(true);
    assert.equal(signal, null);
    assert.equal(code, 0);
    const from = broker.logs.findIndex((l) => l['msg'] === 'shutting down');
    assert.ok(from >= 0);
    const shutdown = broker.logs.slice(from);
    assert.equal(shutdown.at(-1)!['msg'], 'stopped');
    assert.deepEqual(shutdown.filter((l) => Number(l['level']) >= 40), [], 'no warning or error during shutdown (PostgreSQL must not stop under the broker)');
    assert.equal(isAlive(pgPid), false, 'the broker stopped its PostgreSQL');

    const restarted = await startTerminalBroker(dataDir);
    running.add(restarted);
    assert.ok(restarted.logs.some((l) => l['msg'] === 'embedded postgres: started server'), 'a clean start, not an adoption');
    const reader = await mqtt.connectAsync(`mqtt://127.0.0.1:${restarted.mqttPort}`, {
      protocolVersion: 5, reconnectPeriod: 0, clientId: 'ctrl-c-sub', clean: false, properties: { sessionExpiryInterval: 3600 },
    });
    assert.equal(reader.connected, true);
    const got = new Set<string>();
    const all = new Promise<void>((resolve) => reader.on('message', (t) => { got.add(t); if (got.size === 20) resolve(); }));
    await reader.subscribeAsync(`${topic}/#`, { qos: 1 });
    await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error(`retained after restart: ${got.size} of 20`)), 10_000))]);
    await reader.endAsync();
    process.kill(-restarted.proc.pid!, 'SIGINT');
    assert.equal((await restarted.exited as [number | null])[0], 0);
    running.delete(restarted);
  });
});
