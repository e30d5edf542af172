// Retained replay in pages (issue 8, finding 3), in-process: a replay advances only as the client
// takes its output, stays within the session's queue limits, is not multiplied by repeated
// SUBSCRIBEs, never sends a retained message older than one already routed live, and QoS 0
// backpressure counts the connection's own unflushed output.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { Broker } from '../../../src/broker/broker.ts';
import { REPLAY_PAGE_MESSAGES, RetainedReplay } from '../../../src/broker/retained-replay.ts';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

const RETAINED = 500;
const KIB = Buffer.alloc(1024, 0x62);
const text = (p: Extract<Packet, { cmd: 'publish' }>): string => Buffer.from(p.payload).toString();

async function withRetained(broker: Broker, payload = KIB, qos: 0 | 1 = 0): Promise<void> {
  for (let i = 0; i < RETAINED; i++) await broker.publishFromServer({ hub: 'default', topicName: `r/${i}`, payload, qos, retain: true });
}

/** A PINGREQ round trip: everything the broker sent before the PINGRESP has been decoded. */
async function ping(c: EngineClient): Promise<void> {
  const from = c.packets.length;
  c.send({ cmd: 'pingreq' });
  await c.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP', from);
}

async function until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('retained replay in pages', () => {
  test('nothing is replayed while the transport is full; all of it once the client reads, each message once', async () => {
    const { broker } = await startEngine(new FaultyStore());
    await withRetained(broker);
    const c = new EngineClient(broker, 4);
    await c.connect('reader', { clean: true });
    c.channel.buffered = 10 * 1024 * 1024; // the client does not read
    await c.subscribe(1, '#', 0);
    await ping(c);
    assert.equal(c.publishes.length, 0, 'replayed into a full transport');
    c.channel.buffered = 0;
    c.conn.channelDrain();
    await until(() => c.publishes.length >= RETAINED, 'the whole replay');
    await ping(c);
    const topics = c.publishes.map((p) => p.topic);
    assert.equal(topics.length, RETAINED);
    assert.equal(new Set(topics).size, RETAINED);
    assert.ok(c.publishes.every((p) => p.retain), 'retain flag set [MQTT-3.3.1-9]');
    await broker.shutdown();
  });

  test('150 × SUBSCRIBE # from a client that never reads: one replay, at most a page queued', async () => {
    const { broker } = await startEngine(new FaultyStore());
    await withRetained(broker);
    for (const qos of [0, 1] as const) {
      const c = new EngineClient(broker, 4);
      await c.connect(`attacker-${qos}`, { clean: true });
      c.channel.buffered = 10 * 1024 * 1024;
      for (let i = 1; i <= 150; i++) c.send({ cmd: 'subscribe', messageId: i, subscriptions: [{ topic: '#', qos }] });
      await until(() => c.packets.filter((p) => p.cmd === 'suback').length === 150, '150 SUBACKs');
      const session = broker.hub('default').sessions.get(`attacker-${qos}`)!;
      assert.ok(session.outbox.feed instanceof RetainedReplay);
      assert.equal(session.outbox.feed.length, 1);
      assert.ok(session.outbox.queue.length <= REPLAY_PAGE_MESSAGES, `queue ${session.outbox.queue.length}`);
      assert.ok(c.publishes.length <= REPLAY_PAGE_MESSAGES, `sent ${c.publishes.length}`);
    }
    await broker.shutdown();
  });

  test('SUBSCRIBEs with many different filters: the replays outstanding hold one retained store\'s worth at most', async () => {
    const { broker } = await startEngine(new FaultyStore(), { maxQueuedMessages: 10, maxRetainedMessages: RETAINED });
    await withRetained(broker);
    const c = new EngineClient(broker, 4);
    await c.connect('filters', { clean: true });
    c.channel.buffered = 10 * 1024 * 1024; // the client does not read
    const filters = ['#', 'r/#', '+/#', 'r/+', '+/+', 'r/+/#', '+/+/#'];
    filters.forEach((topic, i) => c.send({ cmd: 'subscribe', messageId: i + 1, subscriptions: [{ topic, qos: 0 }] }));
    await until(() => c.packets.filter((p) => p.cmd === 'suback').length === filters.length, 'the SUBACKs');
    const session = broker.hub('default').sessions.get('filters')!;
    const outstanding = RetainedReplay.outstanding(session);
    assert.ok(outstanding <= RETAINED, `${outstanding} replay entries outstanding (${filters.length} filters over ${RETAINED} retained)`);
    assert.ok(session.outbox.droppedCount > 0, 'what did not fit was counted as dropped');
    await broker.shutdown();
  });

  test('QoS 1 replay within the session queue limit and the client window', async () => {
    const { broker } = await startEngine(new FaultyStore(), { maxQueuedMessages: 10 });
    await withRetained(broker, KIB, 1);
    const c = new EngineClient(broker, 5);
    await c.connect('slow', { expirySec: 3600, receiveMaximum: 5 });
    await c.subscribe(1, '#', 1);
    await ping(c);
    const session = broker.hub('default').sessions.get('slow')!;
    await until(() => c.publishes.length === 5, 'the first window');
    assert.ok(session.outbox.queue.length <= 10, `queue ${session.outbox.queue.length} above maxQueuedMessages`);
    const stored = (await broker.store.load()).deliveries.length;
    assert.ok(stored <= 15, `${stored} deliveries stored ahead of the client`);
    c.autoAck = true;
    for (const p of c.publishes) c.send({ cmd: 'puback', messageId: p.messageId!, reasonCode: 0 } as Packet);
    await until(() => c.publishes.length >= RETAINED, 'the whole replay');
    assert.equal(new Set(c.publishes.map((p) => p.topic)).size, RETAINED);
    assert.equal(session.outbox.droppedCount, 0, 'replay waits for room rather than dropping');
    await broker.shutdown();
  });

  test('a retained message replaced while the replay waits is not sent after its newer value', async () => {
    const { broker } = await startEngine(new FaultyStore());
    await withRetained(broker);
    const c = new EngineClient(broker, 4);
    await c.connect('watcher', { clean: true });
    c.channel.buffered = 300 * 1024; // above the soft limit (replay waits), below the hard one (live QoS 0 goes out)
    await c.subscribe(1, '#', 0);
    await broker.publishFromServer({ hub: 'default', topicName: `r/${RETAINED - 1}`, payload: Buffer.from('newer'), qos: 0, retain: true });
    await ping(c);
    c.channel.buffered = 0;
    c.conn.channelDrain();
    await until(() => c.publishes.length >= RETAINED, 'the replay');
    await ping(c);
    const last = c.publishes.filter((p) => p.topic === `r/${RETAINED - 1}`);
    assert.deepEqual(last.map(text), ['newer']);
    await broker.shutdown();
  });
});

describe('QoS 0 backpressure counts unflushed output', () => {
  test('a burst above hardBufferBytes within one turn is dropped, counted and logged', async () => {
    const { broker, logger } = await startEngine(new FaultyStore(), { hardBufferBytes: 1024 * 1024 });
    const c = new EngineClient(broker, 4);
    await c.connect('burst', { clean: true });
    await c.subscribe(1, 'b/#', 0);
    const n = 3000; // ~3 MiB of QoS 0 in one turn, to a transport that reports nothing buffered
    for (let i = 0; i < n; i++) void broker.publishFromServer({ hub: 'default', topicName: 'b/x', payload: KIB, qos: 0 });
    await ping(c);
    assert.ok(c.publishes.length < n, 'every message was queued into unflushed output');
    assert.ok(c.publishes.length >= 900, `only ${c.publishes.length} sent`);
    assert.equal(broker.stats.droppedQos0, n - c.publishes.length);
    assert.ok(logger.lines.some((l) => l.level === 'warn' && /QoS 0 messages dropped/.test(l.msg ?? '')));
    await broker.shutdown();
  });
});
