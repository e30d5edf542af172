// Metrics (src/observability/metrics.ts): events and engine counters in, Prometheus text out,
// with exact values read back through the exposition parser the integration test uses too.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventType, type BrokerEvent, type Transport } from '../../../src/broker/events.ts';
import { newMessageStats } from '../../../src/broker/stats.ts';
import { Metrics, type MetricsSource } from '../../../src/observability/metrics.ts';
import { hasSample, parseExposition, valueOf, type Samples } from '../../helpers/prometheus.ts';

function fakeSource(): MetricsSource & { transports: Transport[]; sessions: number; queued: number; s: ReturnType<typeof newMessageStats>; st: { healthy: boolean; backlogUnits: number; backlogBytes: number } } {
  const s = newMessageStats();
  const st = { healthy: true, backlogUnits: 0, backlogBytes: 0 };
  const src = {
    transports: [] as Transport[], sessions: 0, queued: 0, s, st, store: st,
    connectionTransports: () => src.transports,
    sessionCount: () => src.sessions,
    queuedDeliveries: () => src.queued,
    stats: () => s,
  };
  return src;
}

async function scrape(m: Metrics): Promise<Samples> {
  return parseExposition(await m.scrape());
}

const connect = (transport: Transport, protocolVersion: 4 | 5): BrokerEvent => ({
  type: EventType.Connect, hub: 'h', clientId: 'c', remoteAddress: '127.0.0.1', userId: undefined, method: 'anonymous',
  transport, protocolVersion, cleanStart: true, sessionPresent: false, username: undefined,
});

describe('Metrics', () => {
  test('counters from events: connects by transport and protocol, refusals by reason code and status', async () => {
    const m = new Metrics({ defaultMetrics: false });
    try {
      m.emit(connect('tcp', 5));
      m.emit(connect('tcp', 5));
      m.emit(connect('ws', 4));
      m.emit({ type: EventType.ConnectRefused, hub: 'h', clientId: 'c', remoteAddress: 'a', reasonCode: 0x87, reason: undefined, transport: 'tcp', protocolVersion: 5 });
      m.emit({ type: EventType.ConnectRefused, hub: 'h', clientId: 'c', remoteAddress: 'a', reasonCode: 0x05, reason: undefined, transport: 'tcp', protocolVersion: 4 });
      m.emit({ type: EventType.UpgradeRefused, hub: 'h', remoteAddress: 'a', status: 401, reason: 'no token', transport: 'ws' });
      // (denials are read from the engine's counters: their events are rate-limited)
      m.emit({ type: EventType.AccessDenied, hub: 'h', clientId: 'c', userId: undefined, action: 'publish', name: 't', count: 41 });
      const s = await scrape(m);
      assert.equal(valueOf(s, 'tern_connects_total', { transport: 'tcp', protocol: '5.0' }), 2);
      assert.equal(valueOf(s, 'tern_connects_total', { transport: 'ws', protocol: '3.1.1' }), 1);
      assert.equal(valueOf(s, 'tern_connect_refusals_total', { reason_code: '0x87' }), 1);
      assert.equal(valueOf(s, 'tern_connect_refusals_total', { reason_code: '0x05' }), 1);
      assert.equal(valueOf(s, 'tern_upgrade_refusals_total', { status: '401' }), 1);
      assert.equal(valueOf(s, 'tern_access_denied_total', { action: 'publish' }), 0);
    } finally {
      m.close();
    }
  });

  test('only the events it counts are asked for (the hot-path ones are read from counters instead)', () => {
    const m = new Metrics({ defaultMetrics: false });
    m.close();
    assert.deepEqual([...m.types].sort(), [EventType.Connect, EventType.ConnectRefused, EventType.UpgradeRefused].sort());
  });

  test('message flow, drops, connections, sessions, queue depth and store gauges are read from the source at each scrape', async () => {
    const m = new Metrics({ defaultMetrics: false });
    try {
      const before = await scrape(m);
      assert.equal(valueOf(before, 'tern_messages_received_total', { qos: '0' }), 0);
      assert.ok(hasSample(before, 'tern_messages_received_total', { qos: '2' }), 'every QoS has a line before a source is watched');
      assert.equal(valueOf(before, 'tern_store_healthy'), 1);
      const src = fakeSource();
      m.watch(src);
      src.s.received[0] = 10; src.s.receivedBytes[0] = 1000;
      src.s.received[1] = 5; src.s.receivedBytes[1] = 250;
      src.s.sent[1] = 7; src.s.sentBytes[1] = 350;
      src.s.sent[2] = 1; src.s.sentBytes[2] = 3;
      src.s.droppedQueueFull = 4; src.s.droppedQos0 = 3; src.s.droppedRetainedTooLarge = 2;
      src.s.deniedPublish = 42; src.s.deniedSubscribe = 2;
      src.transports = ['tcp', 'tcp', 'ws', 'tls'];
      src.sessions = 9;
      src.queued = 17;
      src.st.healthy = false; src.st.backlogUnits = 12; src.st.backlogBytes = 3456;
      const s = await scrape(m);
      assert.equal(valueOf(s, 'tern_messages_received_total', { qos: '0' }), 10);
      assert.equal(valueOf(s, 'tern_messages_received_total', { qos: '1' }), 5);
      assert.equal(valueOf(s, 'tern_messages_received_total', { qos: '2' }), 0);
      assert.equal(valueOf(s, 'tern_bytes_received_total', { qos: '0' }), 1000);
      assert.equal(valueOf(s, 'tern_bytes_received_total', { qos: '1' }), 250);
      assert.equal(valueOf(s, 'tern_messages_sent_total', { qos: '1' }), 7);
      assert.equal(valueOf(s, 'tern_messages_sent_total', { qos: '2' }), 1);
      assert.equal(valueOf(s, 'tern_bytes_sent_total', { qos: '1' }), 350);
      assert.equal(valueOf(s, 'tern_bytes_sent_total', { qos: '2' }), 3);
      assert.equal(valueOf(s, 'tern_messages_dropped_total', { reason: 'queue_overflow' }), 4);
      assert.equal(valueOf(s, 'tern_messages_dropped_total', { reason: 'client_buffer_full' }), 3);
      assert.equal(valueOf(s, 'tern_messages_dropped_total', { reason: 'retained_too_large' }), 2);
      assert.equal(valueOf(s, 'tern_access_denied_total', { action: 'publish' }), 42);
      assert.equal(valueOf(s, 'tern_access_denied_total', { action: 'subscribe' }), 2);
      assert.equal(valueOf(s, 'tern_connections', { transport: 'tcp' }), 2);
      assert.equal(valueOf(s, 'tern_connections', { transport: 'ws' }), 1);
      assert.equal(valueOf(s, 'tern_connections', { transport: 'tls' }), 1);
      assert.ok(hasSample(s, 'tern_connections', { transport: 'wss' }));
      assert.equal(valueOf(s, 'tern_connections', { transport: 'wss' }), 0);
      assert.equal(valueOf(s, 'tern_sessions'), 9);
      assert.equal(valueOf(s, 'tern_queue_depth'), 17);
      assert.equal(valueOf(s, 'tern_store_healthy'), 0);
      assert.equal(valueOf(s, 'tern_store_backlog_units'), 12);
      assert.equal(valueOf(s, 'tern_store_backlog_bytes'), 3456);
      // Counters follow the engine's numbers, not accumulate them scrape after scrape
      src.s.received[0] = 11;
      src.transports = [];
      const again = await scrape(m);
      assert.equal(valueOf(again, 'tern_messages_received_total', { qos: '0' }), 11);
      assert.equal(valueOf(again, 'tern_connections', { transport: 'tcp' }), 0);
    } finally {
      m.close();
    }
  });

  test('commit histograms: latency in seconds and rows per batch', async () => {
    const m = new Metrics({ defaultMetrics: false });
    try {
      m.observeCommit(3, 0.8);
      m.observeCommit(150, 20);
      const s = await scrape(m);
      assert.equal(valueOf(s, 'tern_commit_seconds_count'), 2);
      assert.equal(valueOf(s, 'tern_commit_seconds_sum'), 0.0208);
      assert.equal(valueOf(s, 'tern_commit_seconds_bucket', { le: '0.001' }), 1);
      assert.equal(valueOf(s, 'tern_commit_seconds_bucket', { le: '0.025' }), 2);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_count'), 2);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_sum'), 153);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_bucket', { le: '5' }), 1);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_bucket', { le: '100' }), 1);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_bucket', { le: '200' }), 2);
      assert.equal(valueOf(s, 'tern_commit_batch_rows_bucket', { le: '+Inf' }), 2);
    } finally {
      m.close();
    }
  });

  test('the text format: types declared, prometheus content type, event loop lag and default metrics', async () => {
    const m = new Metrics();
    try {
      assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
      const text = await m.scrape();
      assert.match(text, /^# TYPE tern_messages_received_total counter$/m);
      assert.match(text, /^# TYPE tern_connections gauge$/m);
      assert.match(text, /^# TYPE tern_commit_seconds histogram$/m);
      const s = parseExposition(text);
      assert.ok(hasSample(s, 'tern_event_loop_lag_seconds'));
      assert.ok(valueOf(s, 'tern_event_loop_lag_seconds') >= 0);
      assert.ok(hasSample(s, 'nodejs_eventloop_lag_seconds'), 'prom-client default metrics are on the same registry');
      assert.ok(hasSample(s, 'process_resident_memory_bytes') || hasSample(s, 'process_cpu_seconds_total'));
    } finally {
      m.close();
    }
  });
});
