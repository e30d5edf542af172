// Keep alive and the CONNECT deadline in the engine, on a fake clock: a client silent for one and a
// half times its Keep Alive is disconnected (0x8D in 5.0) and its will published; any packet resets
// the timer; the broker's maximum is returned as Server Keep Alive and enforced.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import {
  connectWith, disconnectedWith, engine, ping, publishesReach, settle, subscribe, versionName, VERSIONS,
} from './engine-steps.ts';

describe('keep alive (fake clock)', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-3.1.2-22] silent for 1.5 × Keep Alive: disconnected (5.0: 0x8D) and the will published (${versionName(version)})`, async () => {
      const e = await engine();
      const w = e.client(5);
      await connectWith(w, 'watcher');
      await subscribe(w, 'ka/will', 0);
      const c = e.client(version);
      await connectWith(c, 'sleepy', {
        keepalive: 10, will: { topic: 'ka/will', payload: Buffer.from('timed-out'), qos: 0, retain: false },
      } as Parameters<typeof connectWith>[2]);
      e.clock.advance(15_000 - 1);
      await settle();
      assert.equal(c.closed, false, 'closed before 1.5 × Keep Alive');
      e.clock.advance(1000); // the deadline is checked a few times a second
      if (version === 5) assert.equal(await disconnectedWith(c), 0x8d);
      else await c.whenClosed();
      await publishesReach(w, 1, 'the will');
      await e.stop();
    });
  }

  test('[MQTT-3.1.2-22] any packet from the client restarts the keep alive period', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectWith(c, 'chatty', { keepalive: 10 });
    for (let i = 0; i < 5; i++) {
      e.clock.advance(10_000);
      await ping(c);
    }
    await settle();
    assert.equal(c.closed, false, 'closed though the client sent a packet every Keep Alive');
    await e.stop();
  });

  test('Keep Alive 0 turns the mechanism off', async () => {
    const e = await engine();
    const c = e.client(4);
    await connectWith(c, 'never');
    e.clock.advance(7 * 86_400_000);
    await settle();
    await ping(c);
    await e.stop();
  });

  test('[MQTT-3.2.2-21] a broker maximum below the client\'s Keep Alive is returned as Server Keep Alive and enforced', async () => {
    const e = await engine({ maxKeepAliveSec: 20 });
    const c = e.client(5);
    const connack = await connectWith(c, 'capped', { keepalive: 600 });
    assert.equal(connack.properties?.serverKeepAlive, 20);
    e.clock.advance(30_000 + 1000);
    assert.equal(await disconnectedWith(c), 0x8d);
    await e.stop();
  });

  test('a connection that sends no CONNECT within the connect timeout is closed', async () => {
    const e = await engine({ connectTimeoutMs: 5000 });
    const c = e.client(5);
    e.clock.advance(5000 - 1);
    await settle();
    assert.equal(c.closed, false);
    e.clock.advance(1000);
    await c.whenClosed();
    assert.deepEqual(c.packets.map((p: Packet) => p.cmd), [], 'a client that never connected was sent a packet');
    await e.stop();
  });
});
