// The compiled build as `npm start` runs it: dist/main.js (compiled first if stale) starts on
// PostgreSQL (migrations found from dist/), carries a QoS 1 round trip across both transports and
// both protocol versions, and runs with no tsx loader (so no esbuild service process beside it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
// The first run compiles src/ (a few seconds on a loaded machine) before the broker starts
before(async () => { broker = await startBroker([], {}, { compiled: true, readyTimeoutMs: 120_000 }); });
after(async () => { await broker?.stop(); });

/** NUL-separated /proc file of a process, as a list. */
function procList(pid: number, file: 'cmdline' | 'environ'): string[] {
  return readFileSync(`/proc/${pid}/${file}`, 'utf8').split('\0').filter(Boolean);
}

test('dist/main.js is what runs, with no tsx loader (so no esbuild service beside it)', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  const pid = broker.proc.pid!;
  const args = procList(pid, 'cmdline').slice(1);
  assert.equal(args[0], 'dist/main.js', `broker arguments: ${args.join(' ')}`);
  assert.ok(!args.some((a) => a.includes('tsx')), `broker arguments: ${args.join(' ')}`);
  const nodeOptions = procList(pid, 'environ').find((e) => e.startsWith('NODE_OPTIONS=')) ?? '';
  assert.ok(!nodeOptions.includes('tsx'), nodeOptions);
});

test('a QoS 1 message goes from an MQTT 3.1.1 client over TCP to an MQTT 5 client over WebSocket', async () => {
  const topic = `compiled/${uniqueId()}`;
  const sub = await connect(broker, 'ws', 5);
  const pub = await connect(broker, 'tcp', 4);
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    const got = collect(sub, 1);
    await pub.publishAsync(topic, 'from dist', { qos: 1 });
    const [m] = await got;
    assert.equal(m!.topic, topic);
    assert.equal(m!.payload.toString(), 'from dist');
    assert.equal(m!.packet.qos, 1);
  } finally {
    await close(sub, pub);
  }
});
