// The two wss listeners side by side: uWebSockets.js on the HTTP port and the Node TLS + `ws` listener
// for client certificates (--wss-port). Per listener, a fresh broker (--store memory, source through
// tsx): broker RSS growth per idle MQTT connection, and QoS 0 messages/s of one client echoing to
// itself in windows of 100 in flight. Client and broker share the machine; numbers are indicative.
//   node --import tsx bench/wss-listeners.ts [connections=500] [seconds=5]
import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../test/helpers/broker-process.ts';
import { makeTestCertificates } from '../test/helpers/certificates.ts';

const connections = Number(process.argv[2] ?? 500);
const seconds = Number(process.argv[3] ?? 5);
const certs = makeTestCertificates();

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

function settle(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function connect(url: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, {
    protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ca: certs.ca, cert: certs.client.cert, key: certs.client.key,
  });
}

async function echoRate(client: MqttClient): Promise<number> {
  const topic = `bench/${process.pid}`;
  await client.subscribeAsync(topic, { qos: 0 });
  const payload = Buffer.alloc(64);
  let received = 0;
  let window: () => void = () => undefined;
  let pending = 0;
  client.on('message', () => {
    received++;
    if (--pending === 0) window();
  });
  const end = Date.now() + seconds * 1000;
  const start = Date.now();
  while (Date.now() < end) {
    pending = 100;
    const done = new Promise<void>((r) => { window = r; });
    for (let i = 0; i < 100; i++) client.publish(topic, payload, { qos: 0 });
    await done;
  }
  return received / ((Date.now() - start) / 1000);
}

async function measure(name: string, url: (b: BrokerProcess) => string): Promise<void> {
  const broker = await startBroker(['--store', 'memory', '--mqtts-port', '0', '--wss-port', '0',
    '--tls-cert', certs.server.certFile, '--tls-key', certs.server.keyFile, '--tls-ca', certs.caFile, '--max-connections-per-address', '100000',
    '--connection-rate', '100000', '--connection-burst', '100000'], { TERN_LOG_LEVEL: 'info' });
  try {
    const target = url(broker);
    const warm = await connect(target);
    const rate = await echoRate(warm);
    await settle(500);
    const before = rssKiB(broker.proc.pid!);
    const clients: MqttClient[] = [];
    for (let i = 0; i < connections; i += 50) {
      clients.push(...(await Promise.all(Array.from({ length: Math.min(50, connections - i) }, () => connect(target)))));
    }
    await settle(1000);
    const after = rssKiB(broker.proc.pid!);
    process.stdout.write(`${name}: ${((after - before) / connections).toFixed(1)} KiB RSS per connection (${connections} connections), ${Math.round(rate)} QoS 0 echo messages/s (${seconds} s, 100 in flight, 64-byte payload)\n`);
    await Promise.all([warm, ...clients].map((c) => c.endAsync(true)));
  } finally {
    await broker.stop();
  }
}

try {
  await measure('uWS wss (HTTP port)', (b) => `wss://127.0.0.1:${b.httpPort}/mqtt`);
  await measure('Node TLS + ws (--wss-port)', (b) => `wss://127.0.0.1:${b.wssPort}/mqtt`);
} finally {
  certs.remove();
}
