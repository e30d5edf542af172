// The session manager's deadlines with a fake clock (issue 8, finding 1): session expiry and will
// delay fall due at disconnectedAtMs + interval, for intervals far above 2^31-1 ms, and a restart
// counts from the stored disconnect time. The fake clock's setTimeout fires a longer delay after
// 1 ms, as Node's does.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';

const DAY_MS = 86_400_000;
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** Connect a 5.0 client with a will (QoS 0 on `topic`) and a session expiry. */
async function withWill(c: EngineClient, clientId: string, topic: string, delaySec: number, expirySec: number): Promise<void> {
  const from = c.packets.length;
  c.send({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: false, keepalive: 0, clientId,
    properties: { sessionExpiryInterval: expirySec },
    will: { topic, payload: Buffer.from('gone'), qos: 0, retain: false, properties: { willDelayInterval: delaySec } },
  } as Packet);
  await c.waitFor((p) => p.cmd === 'connack', 'CONNACK', from);
}

async function ping(c: EngineClient): Promise<void> {
  const from = c.packets.length;
  c.send({ cmd: 'pingreq' });
  await c.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP', from);
}

describe('session expiry and will delay with a fake clock', () => {
  test('a session with Session Expiry Interval 2,592,000 s ends 30 days after its client left, not before', async () => {
    const clock = new FakeClock();
    const store = new FaultyStore();
    const { broker } = await startEngine(store, {}, clock);
    const c = new EngineClient(broker, 5);
    await c.connect('long', { expirySec: 2_592_000 });
    await c.subscribe(1, 't', 1);
    c.drop();
    await settle();
    const sessions = broker.hub('default').sessions;
    clock.advance(1);
    clock.advance(DAY_MS);
    await settle();
    assert.ok(sessions.has('long'), 'the session ended a day after its client left');
    clock.advance(29 * DAY_MS - 2);
    await settle();
    assert.ok(sessions.has('long'), 'the session ended before its expiry');
    assert.equal((await store.load()).sessions.length, 1);
    clock.advance(1);
    await settle();
    assert.equal(sessions.has('long'), false, 'the session outlived its expiry');
    assert.equal((await store.load()).sessions.length, 0);
    assert.deepEqual(store.inner.auditEvents.filter((e) => e.event === 'session_expired').map((e) => e.clientId), ['long']);
    await broker.shutdown();
  });

  test('0xFFFFFFFF never expires', async () => {
    const clock = new FakeClock();
    const { broker } = await startEngine(new FaultyStore(), {}, clock);
    const c = new EngineClient(broker, 5);
    await c.connect('forever', { expirySec: 0xffffffff });
    c.drop();
    clock.advance(200 * 365 * DAY_MS);
    await settle();
    assert.ok(broker.hub('default').sessions.has('forever'));
    await broker.shutdown();
  });

  test('a will delayed 3,000,000 s is published then, not when its client drops', async () => {
    const clock = new FakeClock();
    const { broker } = await startEngine(new FaultyStore(), {}, clock);
    const sub = new EngineClient(broker, 5);
    await sub.connect('watcher', { clean: true });
    await sub.subscribe(1, 'will/t', 0);
    const w = new EngineClient(broker, 5);
    await withWill(w, 'dies', 'will/t', 3_000_000, 0xffffffff);
    w.drop();
    clock.advance(1);
    await settle();
    await ping(sub);
    assert.equal(sub.publishes.length, 0, 'the will was published at once');
    clock.advance(3_000_000_000 - 2);
    await settle();
    await ping(sub);
    assert.equal(sub.publishes.length, 0, 'the will was published before its delay');
    clock.advance(1);
    await sub.waitFor((p) => p.cmd === 'publish', 'the will');
    await broker.shutdown();
  });

  test('after a restart, session expiry and will delay count from the stored disconnect time', async () => {
    const clock = new FakeClock();
    const store = new FaultyStore();
    const first = await startEngine(store, {}, clock);
    const c = new EngineClient(first.broker, 5);
    await c.connect('short', { expirySec: 100 });
    c.drop();
    const w = new EngineClient(first.broker, 5);
    await withWill(w, 'willed', 'will/r', 100, 3600);
    w.drop();
    await settle();
    await first.broker.shutdown();

    clock.advance(60_000); // the broker is down for 60 s
    const second = await startEngine(store, {}, clock);
    const sessions = second.broker.hub('default').sessions;
    const sub = new EngineClient(second.broker, 5);
    await sub.connect('watcher', { clean: true });
    await sub.subscribe(1, 'will/r', 0);
    clock.advance(40_000 - 1);
    await settle();
    await ping(sub);
    assert.ok(sessions.has('short'), 'the session ended early');
    assert.equal(sub.publishes.length, 0, 'the will was published early');
    clock.advance(1);
    await sub.waitFor((p) => p.cmd === 'publish', 'the will at 100 s after the disconnect, not 100 s after the restart');
    await settle();
    assert.equal(sessions.has('short'), false, 'the expiry was counted again from the restart');
    await second.broker.shutdown();
  });
});
