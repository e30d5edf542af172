// Will messages in the engine, in-process with a fake clock: published on network loss and on a
// server-side close, not on a normal DISCONNECT, published by DISCONNECT 0x04, delayed by the Will
// Delay Interval (or until the session ends), cancelled by a reconnect, and fed from the codec
// fixture table's CONNECT and DISCONNECT rows.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnectPacket, Packet } from 'mqtt-packet';
import type { EngineClient } from '../../helpers/engine.ts';
import {
  connectPersistent, connectWith, engine, fixture, publishesReach, quiet, settle, subscribe, text, versionName, VERSIONS,
  type Connack, type TestEngine, type Version,
} from './engine-steps.ts';

/** A clean 5.0 client subscribed to `topic` at QoS 2, to watch for wills. */
async function watcher(e: TestEngine, topic: string): Promise<EngineClient> {
  const w = e.client(5);
  await connectWith(w, 'watcher');
  await subscribe(w, topic, 2);
  return w;
}

/** The CONNECT `will` field (mqtt-packet's shape); `delaySec` only for 5.0. */
function will(version: Version, topic: string, payload: string, delaySec = 0, o: { qos?: 0 | 1 | 2; retain?: boolean } = {}): Partial<IConnectPacket> {
  return {
    will: {
      topic, payload: Buffer.from(payload), qos: o.qos ?? 0, retain: o.retain ?? false,
      ...(version === 5 && delaySec > 0 ? { properties: { willDelayInterval: delaySec } } : {}),
    },
  } as Partial<IConnectPacket>;
}

/** Connect a session with a will and a session expiry (5.0; 3.1.1 sessions are persistent here). */
async function willed(e: TestEngine, version: Version, id: string, topic: string, delaySec = 0, expirySec = 3600, o = {}): Promise<EngineClient> {
  const c = e.client(version);
  await connectPersistent(c, id, expirySec, will(version, topic, `${id}-will`, delaySec, o));
  return c;
}

describe('when the will is published', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-3.1.2-8] the will is published when the network connection is lost, once (${versionName(version)})`, async () => {
      const e = await engine();
      const w = await watcher(e, 'will/lost');
      const c = await willed(e, version, 'lost', 'will/lost');
      c.drop();
      const [p] = await publishesReach(w, 1);
      assert.equal(text(p!), 'lost-will');
      // [MQTT-3.1.2-10] a published will is removed: the next connection, without a will, leaves none
      const again = e.client(version);
      await connectPersistent(again, 'lost');
      again.drop();
      await quiet(w);
      assert.equal(w.publishes.length, 1, 'the will was published twice');
      await e.stop();
    });

    test(`[MQTT-3.14.4-3] [MQTT-3.1.2-10] a normal DISCONNECT discards the will, also from the store (${versionName(version)})`, async () => {
      const e = await engine();
      const w = await watcher(e, 'will/normal');
      const c = await willed(e, version, 'normal', 'will/normal');
      assert.equal((await e.store.load()).wills.length, 1, 'the will of a persistent session is stored');
      c.send({ cmd: 'disconnect', reasonCode: 0 } as Packet);
      await c.whenClosed();
      await quiet(w);
      assert.equal(w.publishes.length, 0, 'the will was published after a normal DISCONNECT');
      assert.equal((await e.store.load()).wills.length, 0, 'the discarded will is still stored');
      await e.stop();
    });

    test(`[MQTT-3.1.2-8] a connection the broker closes for a protocol error publishes its will (${versionName(version)})`, async () => {
      const e = await engine();
      const w = await watcher(e, 'will/error');
      const c = await willed(e, version, 'error', 'will/error');
      c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: 'error' }); // [MQTT-3.1.0-2]
      await c.whenClosed();
      await publishesReach(w, 1);
      await e.stop();
    });
  }

  test('DISCONNECT 0x04 (fixture row) publishes the will, and its Session Expiry Interval 0 ends the session', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/04');
    const c = await willed(e, 5, 'asks', 'will/04');
    c.sendBytes(fixture('DISCONNECT 5.0 with will, session expiry and reason string').wire);
    await c.whenClosed();
    const [p] = await publishesReach(w, 1);
    assert.equal(text(p!), 'asks-will');
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'asks')).sessionPresent, false, 'the session outlived DISCONNECT with expiry 0');
    await e.stop();
  });

  test('[MQTT-3.1.2-14] a will with Will Retain 0 is not kept as a retained message', async () => {
    const e = await engine();
    const c = await willed(e, 5, 'plain', 'will/plain');
    c.drop();
    await settle();
    const late = await watcher(e, 'will/plain');
    await quiet(late);
    assert.equal(late.publishes.length, 0);
    await e.stop();
  });

  test('[v3.1.1 MQTT-3.1.2-17] CONNECT 3.1.1 with a retained QoS 1 will (fixture row): the will is kept as retained', async () => {
    const e = await engine();
    const c = e.client(4);
    c.sendBytes(fixture('CONNECT 3.1.1 with will (QoS 1, retain), username and password').wire);
    await c.waitFor((p) => p.cmd === 'connack', 'CONNACK');
    assert.ok(c.bytesOut.equals(fixture('CONNACK 3.1.1 accepted').wire), `CONNACK bytes ${c.bytesOut.toString('hex')}`);
    c.drop();
    await settle();
    const late = e.client(4);
    await connectWith(late, 'late');
    await subscribe(late, 'w/t', 1);
    const [p] = await publishesReach(late, 1);
    assert.deepEqual([p!.topic, text(p!), p!.qos, p!.retain], ['w/t', 'bye', 1, true]);
    await e.stop();
  });
});

describe('Will Delay Interval (fake clock)', () => {
  test('§3.1.3.2.2 CONNECT 5.0 fixture row: the will leaves after its 5 s delay, with its properties', async () => {
    const e = await engine();
    const w = await watcher(e, 'w');
    const c = e.client(5);
    c.sendBytes(fixture('CONNECT 5.0 with properties, will properties, username and password').wire);
    const connack = await c.waitFor((p) => p.cmd === 'connack', 'CONNACK') as Connack;
    assert.equal(connack.reasonCode, 0);
    c.drop();
    e.clock.advance(5000 - 1);
    await quiet(w);
    assert.equal(w.publishes.length, 0, 'the will left before its delay');
    e.clock.advance(1);
    const [p] = await publishesReach(w, 1);
    assert.deepEqual([p!.topic, text(p!), p!.qos], ['w', 'x', 2]);
    // [MQTT-3.3.2-4] [MQTT-3.3.2-20] will properties travel with the message; expiry counts from publication
    assert.equal(p!.properties?.contentType, 'text/plain');
    assert.equal(p!.properties?.payloadFormatIndicator, true);
    assert.equal(p!.properties?.messageExpiryInterval, 60);
    await e.stop();
  });

  test('[MQTT-3.1.3-9] a reconnect within the delay cancels the will', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/back');
    const c = await willed(e, 5, 'back', 'will/back', 30);
    c.drop();
    e.clock.advance(29_000);
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'back')).sessionPresent, true);
    e.clock.advance(60_000);
    await quiet(w);
    assert.equal(w.publishes.length, 0, 'the will was published though the client came back in time');
    await e.stop();
  });

  test('§3.1.3.2.2 a delay longer than the session: the will leaves when the session ends', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/ends');
    const c = await willed(e, 5, 'ends', 'will/ends', 600, 10);
    c.drop();
    e.clock.advance(10_000 - 1);
    await quiet(w);
    assert.equal(w.publishes.length, 0, 'published before the session ended');
    e.clock.advance(1);
    await publishesReach(w, 1);
    await e.stop();
  });

  test('§3.1.3.2.2 a delayed will of a session with expiry 0 leaves at once (the session ends with its connection)', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/now');
    const c = e.client(5);
    await connectWith(c, 'now', will(5, 'will/now', 'now-will', 600));
    c.drop();
    await publishesReach(w, 1);
    await e.stop();
  });

  test('[MQTT-3.1.4-3] a takeover publishes the will of the old connection when its delay is 0', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/taken');
    await willed(e, 5, 'taken', 'will/taken');
    const second = e.client(5);
    assert.equal((await connectPersistent(second, 'taken')).sessionPresent, true);
    await publishesReach(w, 1);
    await e.stop();
  });

  test('a takeover with clean start 1 ends the old session, so a delayed will is published at once', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/clean');
    await willed(e, 5, 'cleaned', 'will/clean', 60);
    const second = e.client(5);
    assert.equal((await connectWith(second, 'cleaned', { clean: true })).sessionPresent, false);
    await publishesReach(w, 1);
    await e.stop();
  });

  test('[MQTT-3.1.3-9] a takeover that resumes the session within the delay does not publish the will', async () => {
    const e = await engine();
    const w = await watcher(e, 'will/kept');
    await willed(e, 5, 'kept', 'will/kept', 30);
    const second = e.client(5);
    assert.equal((await connectPersistent(second, 'kept')).sessionPresent, true);
    e.clock.advance(60_000);
    await quiet(w);
    assert.equal(w.publishes.length, 0);
    await e.stop();
  });
});
