// A log reader that stops reading (a full pipe, a stalled journald or container log driver) must
// not stop the broker: lines are written without blocking the event loop, lines over
// --log-buffer-bytes are dropped and counted (tern_log_lines_dropped_total), the count is logged
// once stdout takes lines again, and SIGTERM still ends the process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { logCount, startBroker, waitForLog, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';
import { parseExposition, valueOf } from '../helpers/prometheus.ts';

/** Anonymous clients may use public/# only: every other PUBLISH writes a debug line ("not authorized"). */
const ACL = 'topic readwrite public/#\n';
/** ~1 KiB per debug line: the flood below writes ~4 MiB of log lines */
const DENIED = `denied/${'x'.repeat(1000)}`;
const FLOOD = 4000;

async function withBroker(run: (broker: BrokerProcess) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-log-'));
  const acl = path.join(dir, 'acl');
  writeFileSync(acl, ACL);
  const broker = await startBroker(['--store', 'memory', '--acl-file', acl, '--allow-anonymous', '--log-buffer-bytes', '65536'], { TERN_LOG_LEVEL: 'debug' });
  try {
    await run(broker);
  } finally {
    await broker.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Thousands of denied publishes (a debug line each), then a QoS 1 one: its PUBACK means all were handled. */
async function flood(broker: BrokerProcess): Promise<MqttClient> {
  const c = await connect(broker, 'tcp', 4, { clientId: uniqueId('flood') });
  for (let i = 0; i < FLOOD; i++) c.publish(DENIED, 'x', { qos: 0 });
  await c.publishAsync(`public/${uniqueId()}`, 'sync', { qos: 1 });
  return c;
}

async function droppedMetric(broker: BrokerProcess): Promise<number> {
  const res = await fetch(`http://${broker.host}:${broker.httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return valueOf(parseExposition(await res.text()), 'tern_log_lines_dropped_total');
}

/** SIGTERM, bounded: a broker blocked on its stdout would never exit. */
async function stopWithin(broker: BrokerProcess, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), ms); });
  const code = await Promise.race([broker.stop(), late]);
  clearTimeout(timer);
  assert.notEqual(code, 'late', `the broker did not exit within ${ms} ms of SIGTERM`);
  return code as number | null;
}

test('a broker whose stdout is not read keeps serving, counts the dropped lines and stops on SIGTERM', async () => {
  await withBroker(async (broker) => {
    broker.proc.stdout!.pause(); // nobody reads the broker's stdout from here on
    const flooder = await flood(broker);

    // Still serving MQTT and HTTP
    const topic = `public/${uniqueId()}`;
    const sub = await connect(broker, 'ws', 5);
    await sub.subscribeAsync(topic, { qos: 1 });
    const got = collect(sub, 1);
    const pub = await connect(broker, 'tcp', 5);
    await pub.publishAsync(topic, 'still here', { qos: 1 });
    assert.equal((await got)[0]!.payload.toString(), 'still here');
    assert.ok(await droppedMetric(broker) > 0, 'lines over the log buffer are counted as dropped');
    await close(flooder, sub, pub);

    assert.equal(await stopWithin(broker, 30_000), 0);
  });
});

test('once stdout is read again, one line says how many lines were dropped', async () => {
  await withBroker(async (broker) => {
    broker.proc.stdout!.pause();
    const flooder = await flood(broker);
    const dropped = await droppedMetric(broker);
    assert.ok(dropped > 0);

    broker.proc.stdout!.resume();
    // Nothing else is logged now: the buffer draining alone brings the report. (One may have gone
    // out during the flood, with the count then, and lines logged while the buffer still drained
    // may have been dropped too: the reports add up to the count once they are all in.)
    const REPORT = 'log lines dropped: stdout was not taking them';
    const reported = (): number => broker.logs.filter((l) => l['msg'] === REPORT).reduce((n, l) => n + Number(l['dropped']), 0);
    let total = dropped;
    for (let reports = 0; reported() !== total; reports++) {
      assert.ok(reports < 20, `reported ${reported()} of ${total} dropped lines`);
      await waitForLog(broker, REPORT, reports, 20_000);
      total = await droppedMetric(broker);
    }
    const seen = logCount(broker, 'not authorized');
    await flooder.publishAsync(DENIED, 'after', { qos: 1 });
    await waitForLog(broker, 'not authorized', seen, 10_000);
    assert.equal(await droppedMetric(broker), total, 'nothing dropped once stdout is read');
    await close(flooder);

    assert.equal(await stopWithin(broker, 30_000), 0);
    assert.ok(logCount(broker, 'stopped') > 0, 'the last line before exit is written');
  });
});
