// GET /metrics, /healthz, /readyz and /api/health on a real broker: MQTT.js traffic of known
// size, then the counters must have moved by exactly that traffic (scrapes before and after).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, pubCode, refusal, uniqueId } from '../helpers/clients.ts';
import { parseExposition, valueOf, type Samples } from '../helpers/prometheus.ts';

let dir: string;
let broker: BrokerProcess;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-metrics-'));
  const aclFile = path.join(dir, 'acl');
  // Anonymous clients may use m/# only: a publish elsewhere is denied
  writeFileSync(aclFile, 'topic readwrite m/#\n');
  broker = await startBroker(['--acl-file', aclFile, '--allow-anonymous']);
});
after(async () => {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
});

const base = (b: BrokerProcess): string => `http://${b.host}:${b.httpPort}`;

async function scrape(b: BrokerProcess, headers: Record<string, string> = {}): Promise<Samples> {
  const res = await fetch(`${base(b)}/metrics`, { headers });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(await res.text());
}

/** Scrape until `ready(samples)` holds (bounded); returns those samples. */
async function scrapeUntil(b: BrokerProcess, ready: (s: Samples) => boolean, what: string, timeoutMs = 5000): Promise<Samples> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(b);
    if (ready(s)) return s;
    if (Date.now() > deadline) assert.fail(`metrics never showed ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** How far a sample moved between two scrapes. */
const moved = (before: Samples, after: Samples, name: string, labels: Record<string, string> = {}): number =>
  valueOf(after, name, labels) - valueOf(before, name, labels);

describe('metrics and health endpoints', () => {
  test('/metrics counters move by exactly the traffic sent: messages and bytes by QoS, connects, refusals, denials', async () => {
    const before = await scrape(broker);
    const topic = `m/${uniqueId('t')}`;
    const sub = await connect(broker, 'tcp', 5);
    const pub = await connect(broker, 'tcp', 5);
    try {
      await sub.subscribeAsync(`${topic}/#`, { qos: 1 });
      const received = collect(sub, 15);
      for (let i = 0; i < 10; i++) pub.publish(`${topic}/a`, Buffer.alloc(100, i), { qos: 0 });
      for (let i = 0; i < 5; i++) await pub.publishAsync(`${topic}/b`, Buffer.alloc(50, i), { qos: 1 });
      assert.equal((await received).length, 15);
      // A publish outside the ACL: denied (0x87), yet received
      assert.equal(await pubCode(pub, 'elsewhere/x', 'denied!'), 0x87);
      // A client id over the 256-byte cap: refused with 0x85
      const err = await refusal(connect(broker, 'tcp', 5, { clientId: 'x'.repeat(300) }));
      assert.equal(err.code, 0x85);
      const after = await scrapeUntil(broker, (s) => moved(before, s, 'tern_access_denied_total', { action: 'publish' }) >= 1
        && moved(before, s, 'tern_connect_refusals_total', { reason_code: '0x85' }) >= 1, 'the denial and the refusal');
      assert.equal(moved(before, after, 'tern_messages_received_total', { qos: '0' }), 10);
      assert.equal(moved(before, after, 'tern_bytes_received_total', { qos: '0' }), 1000);
      assert.equal(moved(before, after, 'tern_messages_received_total', { qos: '1' }), 6, '5 routed and 1 denied');
      assert.equal(moved(before, after, 'tern_bytes_received_total', { qos: '1' }), 5 * 50 + 'denied!'.length);
      assert.equal(moved(before, after, 'tern_messages_received_total', { qos: '2' }), 0);
      assert.equal(moved(before, after, 'tern_messages_sent_total', { qos: '0' }), 10);
      assert.equal(moved(before, after, 'tern_bytes_sent_total', { qos: '0' }), 1000);
      assert.equal(moved(before, after, 'tern_messages_sent_total', { qos: '1' }), 5);
      assert.equal(moved(before, after, 'tern_bytes_sent_total', { qos: '1' }), 250);
      assert.equal(moved(before, after, 'tern_connects_total', { transport: 'tcp', protocol: '5.0' }), 2);
      assert.equal(moved(before, after, 'tern_connect_refusals_total', { reason_code: '0x85' }), 1);
      assert.equal(moved(before, after, 'tern_access_denied_total', { action: 'publish' }), 1);
      assert.equal(moved(before, after, 'tern_messages_dropped_total', { reason: 'queue_overflow' }), 0);
      assert.equal(valueOf(after, 'tern_connections', { transport: 'tcp' }), 2);
      assert.equal(valueOf(after, 'tern_sessions'), 2);
      assert.equal(valueOf(after, 'tern_queue_depth'), 0);
      assert.equal(valueOf(after, 'tern_store_healthy'), 1);
      // The audit rows of the connects went through PostgreSQL group commits
      const committed = await scrapeUntil(broker, (s) => moved(before, s, 'tern_commit_seconds_count') > 0, 'a group commit');
      assert.ok(valueOf(committed, 'tern_commit_batch_rows_sum') >= valueOf(committed, 'tern_commit_batch_rows_count'));
      assert.ok(valueOf(committed, 'tern_event_loop_lag_seconds') >= 0);
    } finally {
      await close(sub, pub);
    }
    await scrapeUntil(broker, (s) => valueOf(s, 'tern_connections', { transport: 'tcp' }) === 0, 'the connections closed');
  });

  test('/healthz and /readyz answer 200; HEAD and GET /api/health answer 200 without a token', async () => {
    const healthz = await fetch(`${base(broker)}/healthz`);
    assert.equal(healthz.status, 200);
    assert.deepEqual(await healthz.json(), { status: 'ok' });
    const readyz = await fetch(`${base(broker)}/readyz`);
    assert.equal(readyz.status, 200);
    assert.deepEqual(await readyz.json(), { status: 'ok', checks: { store: true, listeners: true } });
    const head = await fetch(`${base(broker)}/api/health?api-version=2024-01-01`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const get = await fetch(`${base(broker)}/api/health`);
    assert.equal(get.status, 200);
    // The rest of /api still needs its token
    const other = await fetch(`${base(broker)}/api/hubs/h/groups/g/connections/c/:add`, { method: 'PUT' });
    assert.equal(other.status, 401);
  });

  test('--metrics-token: /metrics needs "Authorization: Bearer <token>"; the probes do not', async () => {
    const guarded = await startBroker(['--store', 'memory', '--metrics-token', 'scrape-secret']);
    try {
      assert.equal((await fetch(`${base(guarded)}/metrics`)).status, 401);
      assert.equal((await fetch(`${base(guarded)}/metrics`, { headers: { authorization: 'Bearer wrong-secret' } })).status, 401);
      const s = await scrape(guarded, { authorization: 'Bearer scrape-secret' });
      assert.equal(valueOf(s, 'tern_store_healthy'), 1);
      assert.equal((await fetch(`${base(guarded)}/healthz`)).status, 200);
      assert.equal((await fetch(`${base(guarded)}/readyz`)).status, 200);
    } finally {
      await guarded.stop();
    }
  });
});
