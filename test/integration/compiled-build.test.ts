// The compiled build as `npm start` runs it: dist/main.js (compiled first if stale) starts on
// PostgreSQL (migrations found from dist/), carries a QoS 1 round trip across both transports and
// both protocol versions, and runs with no tsx loader: no esbuild service process beside it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
// The first run compiles src/ (a few seconds on a loaded machine) before the broker starts
before(async () => { broker = await startBroker([], {}, { compiled: true, readyTimeoutMs: 120_000 }); });
after(async () => { await broker?.stop(); });

/** Command lines of the direct children of `pid` (from /proc). */
function childCommands(pid: number): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      out.push(readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim());
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

test('dist/main.js is what runs, not the TypeScript source', () => {
  assert.deepEqual(broker.proc.spawnargs.slice(1, 2), ['dist/main.js']);
  assert.ok(broker.logs.some((l) => l['msg'] === 'tern listening'));
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

test('no esbuild service process runs beside the compiled broker', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  const children = childCommands(broker.proc.pid!);
  assert.deepEqual(children.filter((c) => /esbuild|tsx/.test(c)), [], `children: ${JSON.stringify(children)}`);
});
