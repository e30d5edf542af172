// Session state across connections, in-process with a fake clock: clean start, session present,
// messages queued while offline and resent on resume (with the right DUP), takeover, and session
// expiry (including 0xFFFFFFFF = never and a restart in between).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import {
  acknowledge, connectPersistent, connectWith, disconnectedWith, engine, publish, publishesReach, quiet, settle, subscribe,
  text, versionName, VERSIONS, type TestEngine, type Version,
} from './engine-steps.ts';
import { EngineClient, startEngine } from '../../helpers/engine.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';

const DAY_MS = 86_400_000;

/** A persistent session `id` subscribed to `topic` at `qos`, then gone (network failure). */
async function offlineSession(e: TestEngine, version: Version, id: string, topic: string, qos: 0 | 1 | 2, expirySec = 3600): Promise<void> {
  const c = e.client(version);
  await connectPersistent(c, id, expirySec);
  await subscribe(c, topic, qos);
  c.drop();
  await settle();
}

/** A clean 5.0 publisher. */
async function publisher(e: TestEngine): Promise<ReturnType<TestEngine['client']>> {
  const pub = e.client(5);
  await connectWith(pub, 'pub');
  return pub;
}

describe('clean start and session present', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-3.2.2-3] clean start 0 with a stored session: session present 1 and its subscriptions still route (${versionName(version)})`, async () => {
      const e = await engine();
      await offlineSession(e, version, 's', 'sp/t', 1);
      const c = e.client(version);
      assert.equal((await connectPersistent(c, 's')).sessionPresent, true);
      const pub = await publisher(e);
      await publish(pub, 'sp/t', 'still', 1);
      assert.equal(text((await publishesReach(c, 1))[0]!), 'still');
      await e.stop();
    });

    test(`[MQTT-3.1.2-4] [MQTT-3.2.2-2] clean start 1 discards the stored session: session present 0, no subscriptions, nothing queued (${versionName(version)})`, async () => {
      const e = await engine();
      await offlineSession(e, version, 's', 'cs/t', 1);
      const pub = await publisher(e);
      await publish(pub, 'cs/t', 'queued', 1);
      const c = e.client(version);
      assert.equal((await connectWith(c, 's', { clean: true })).sessionPresent, false);
      await publish(pub, 'cs/t', 'after', 1);
      await quiet(c);
      assert.equal(c.publishes.length, 0, 'the discarded session still had its queue or subscription');
      c.drop();
      await settle();
      const again = e.client(version);
      assert.equal((await connectPersistent(again, 's')).sessionPresent, false, 'the clean session outlived its connection');
      await e.stop();
    });

    test(`[MQTT-3.2.2-3] clean start 0 without a stored session: session present 0 (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      assert.equal((await connectPersistent(c, 'fresh')).sessionPresent, false);
      await e.stop();
    });
  }

  test('§3.1.2.11.2 5.0: Session Expiry Interval absent (0) ends the session with its connection', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectWith(c, 'brief', { clean: false });
    await subscribe(c, 'brief/t', 1);
    c.drop();
    await settle();
    const again = e.client(5);
    assert.equal((await connectWith(again, 'brief', { clean: false })).sessionPresent, false);
    assert.equal((await e.store.load()).sessions.length, 0, 'a session with expiry 0 was stored');
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`[MQTT-3.1.4-3] a second connection with the client id takes the session over; the first is closed (${versionName(version)})`, async () => {
      const e = await engine();
      const first = e.client(version);
      await connectPersistent(first, 'twin');
      await subscribe(first, 'twin/t', 1);
      const second = e.client(version);
      assert.equal((await connectPersistent(second, 'twin')).sessionPresent, true);
      if (version === 5) assert.equal(await disconnectedWith(first), 0x8e, 'DISCONNECT Session taken over');
      else await first.whenClosed();
      const pub = await publisher(e);
      await publish(pub, 'twin/t', 'to-second', 1);
      await publishesReach(second, 1);
      assert.equal(first.publishes.length, 0);
      await e.stop();
    });
  }
  test('[MQTT-3.1.4-3] [MQTT-4.4.0-1] a takeover resends what was in flight to the new connection, DUP 1', async () => {
    const e = await engine();
    const first = e.client(5);
    await connectPersistent(first, 'moved');
    await subscribe(first, 'moved/t', 1);
    const pub = await publisher(e);
    await publish(pub, 'moved/t', 'in-flight', 1);
    const [sent] = await publishesReach(first, 1);
    const second = e.client(5);
    assert.equal((await connectPersistent(second, 'moved')).sessionPresent, true);
    const [again] = await publishesReach(second, 1);
    assert.deepEqual([text(again!), again!.messageId, again!.dup], ['in-flight', sent!.messageId, true]);
    await e.stop();
  });
});

describe('messages kept for an offline session', () => {
  for (const version of VERSIONS) {
    test(`[MQTT-4.5.0-1] QoS 1 and 2 messages queued while offline arrive on resume, in order, with DUP 0 (${versionName(version)})`, async () => {
      const e = await engine();
      await offlineSession(e, version, 'q', 'queue/t', 2);
      const pub = await publisher(e);
      await publish(pub, 'queue/t', 'one', 1);
      await publish(pub, 'queue/t', 'two', 2);
      await publish(pub, 'queue/t', 'zero', 0); // QoS 0 is not kept for an offline session
      await publish(pub, 'queue/t', 'three', 1);
      const c = e.client(version);
      assert.equal((await connectPersistent(c, 'q')).sessionPresent, true);
      await publishesReach(c, 3);
      await quiet(c);
      assert.deepEqual(c.publishes.map((p) => [text(p), p.qos, p.dup]), [['one', 1, false], ['two', 2, false], ['three', 1, false]]);
      await e.stop();
    });

    test(`[MQTT-4.4.0-1] [MQTT-3.3.1-1] an unacknowledged QoS 1 PUBLISH is resent on resume with DUP 1 and the same packet id (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      await connectPersistent(c, 'r');
      await subscribe(c, 'resend/t', 1);
      const pub = await publisher(e);
      await publish(pub, 'resend/t', 'unacked', 1);
      const [sent] = await publishesReach(c, 1);
      c.drop();
      const back = e.client(version);
      assert.equal((await connectPersistent(back, 'r')).sessionPresent, true);
      const [again] = await publishesReach(back, 1);
      assert.deepEqual([text(again!), again!.messageId, again!.dup], ['unacked', sent!.messageId, true]);
      assert.equal(sent!.dup, false);
      await acknowledge(back, again!);
      back.drop();
      const third = e.client(version);
      await connectPersistent(third, 'r');
      await quiet(third);
      assert.equal(third.publishes.length, 0, 'an acknowledged message was resent [MQTT-4.4.0-2]');
      await e.stop();
    });

    test(`[MQTT-4.4.0-1] [MQTT-4.3.3-6] after PUBREC the resume sends PUBREL, not the PUBLISH again (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      await connectPersistent(c, 'r2');
      await subscribe(c, 'resend2/t', 2);
      const pub = await publisher(e);
      await publish(pub, 'resend2/t', 'qos2', 2);
      const [p] = await publishesReach(c, 1);
      const from = c.packets.length;
      c.send({ cmd: 'pubrec', messageId: p!.messageId!, reasonCode: 0 } as Packet);
      await c.waitFor((x) => x.cmd === 'pubrel', 'PUBREL', from);
      c.drop();
      const back = e.client(version);
      await connectPersistent(back, 'r2');
      const rel = await back.waitFor((x) => x.cmd === 'pubrel', 'PUBREL on resume');
      assert.equal((rel as { messageId: number }).messageId, p!.messageId);
      await quiet(back);
      assert.equal(back.publishes.length, 0, 'the PUBLISH was sent again after its PUBREC');
      back.send({ cmd: 'pubcomp', messageId: p!.messageId!, reasonCode: 0 } as Packet);
      await quiet(back);
      assert.equal((await e.store.load()).deliveries.length, 0);
      await e.stop();
    });
  }

  test('a restart brings back the session, its subscription and its queue (session present 1)', async () => {
    let e = await engine();
    await offlineSession(e, 5, 'kept', 'restart/t', 1);
    const pub = await publisher(e);
    await publish(pub, 'restart/t', 'before-restart', 1);
    e = await e.restart();
    const c = e.client(5);
    assert.equal((await connectPersistent(c, 'kept')).sessionPresent, true);
    assert.deepEqual((await publishesReach(c, 1)).map(text), ['before-restart']);
    const pub2 = await publisher(e);
    await publish(pub2, 'restart/t', 'after-restart', 1);
    assert.deepEqual((await publishesReach(c, 2)).map(text), ['before-restart', 'after-restart']);
    await e.stop();
  });
});

describe('session expiry (fake clock)', () => {
  test('[MQTT-3.1.2-23] a session lasts its Session Expiry Interval after the connection ends, and not a millisecond more', async () => {
    const e = await engine();
    await offlineSession(e, 5, 'ten', 'exp/t', 1, 10);
    await offlineSession(e, 5, 'ten-b', 'exp/t', 1, 10);
    e.clock.advance(10_000 - 1);
    await settle();
    const early = e.client(5);
    assert.equal((await connectPersistent(early, 'ten', 10)).sessionPresent, true, 'ended before its expiry');
    e.clock.advance(1);
    await settle();
    const late = e.client(5);
    assert.equal((await connectPersistent(late, 'ten-b', 10)).sessionPresent, false, 'outlived its expiry');
    await e.stop();
  });

  test('a session that expired takes its queued messages with it', async () => {
    const e = await engine();
    await offlineSession(e, 5, 'gone', 'gone/t', 1, 5);
    const pub = await publisher(e);
    await publish(pub, 'gone/t', 'lost', 1);
    e.clock.advance(5000);
    await settle();
    assert.equal((await e.store.load()).deliveries.length, 0, 'the expired session\'s deliveries are still stored');
    const c = e.client(5);
    assert.equal((await connectPersistent(c, 'gone', 5)).sessionPresent, false);
    await quiet(c);
    assert.equal(c.publishes.length, 0);
    await e.stop();
  });

  test('0xFFFFFFFF never expires; neither does a 3.1.1 session with clean session 0', async () => {
    const e = await engine();
    await offlineSession(e, 5, 'forever', 'f/t', 0, 0xffffffff);
    await offlineSession(e, 4, 'v3', 'f/t', 0);
    e.clock.advance(150 * 365 * DAY_MS);
    await settle();
    for (const [id, version] of [['forever', 5], ['v3', 4]] as const) {
      const c = e.client(version);
      assert.equal((await connectPersistent(c, id, 0xffffffff)).sessionPresent, true, `${id} expired`);
    }
    await e.stop();
  });

  test('§3.2.2.3.2 a Session Expiry Interval above the broker\'s maximum is lowered, told in CONNACK and enforced', async () => {
    const e = await engine({ maxSessionExpirySec: 60 });
    const c = e.client(5);
    const connack = await connectPersistent(c, 'capped', 3600);
    assert.equal(connack.properties?.sessionExpiryInterval, 60);
    c.drop();
    e.clock.advance(60_000);
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'capped', 3600)).sessionPresent, false, 'the session lived past the broker\'s maximum');
    await e.stop();
  });

  test('§3.14.2.2.2 DISCONNECT may shorten the Session Expiry Interval (to 0: the session ends now)', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectPersistent(c, 'short', 3600);
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } } as Packet);
    await c.whenClosed();
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'short', 3600)).sessionPresent, false);
    await e.stop();
  });

  test('§3.14.2.2.2 DISCONNECT may change the Session Expiry Interval: the new value counts from that disconnect', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectPersistent(c, 'changed', 3600);
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 10 } } as Packet);
    await c.whenClosed();
    await settle();
    e.clock.advance(10_000);
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'changed', 3600)).sessionPresent, false, 'the session kept its CONNECT expiry');
    await e.stop();
  });

  test('§3.14.2.2.2 DISCONNECT cannot give a session with expiry 0 a non-zero expiry: Protocol Error', async () => {
    const e = await engine();
    const c = e.client(5);
    await connectWith(c, 'zero', { clean: false });
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 600 } } as Packet);
    assert.equal(await disconnectedWith(c), 0x82);
    await settle();
    const again = e.client(5);
    assert.equal((await connectPersistent(again, 'zero', 600)).sessionPresent, false, 'the session outlived its connection');
    await e.stop();
  });

  test('after a restart the expiry counts from the stored disconnect time, not from the restart', async () => {
    let e = await engine();
    await offlineSession(e, 5, 'restarted-a', 'rs/t', 0, 30);
    await offlineSession(e, 5, 'restarted-b', 'rs/t', 0, 30);
    e.clock.advance(20_000); // 20 s offline, then the broker restarts
    e = await e.restart();
    e.clock.advance(10_000 - 1);
    await settle();
    const a = e.client(5);
    assert.equal((await connectPersistent(a, 'restarted-a', 30)).sessionPresent, true, 'ended before its expiry');
    e.clock.advance(1);
    await settle();
    const b = e.client(5);
    assert.equal((await connectPersistent(b, 'restarted-b', 30)).sessionPresent, false, 'the expiry counted from the restart');
    await e.stop();
  });
});

describe('clean start in a hub that holds only the session it discards', () => {
  test('the new session is the hub\'s session for its client id (the hub is not forgotten under it)', async () => {
    const { broker } = await startEngine(new MemoryStore());
    for (const expirySec of [0, 3600]) {
      const hubName = `solo${expirySec}`;
      const first = new EngineClient(broker, 5, hubName);
      await first.connect('only', { expirySec });
      await first.subscribe(1, 'room', 1);
      first.drop();
      await new Promise((r) => setImmediate(r));
      const again = new EngineClient(broker, 5, hubName);
      await again.connect('only', { clean: true });
      await again.subscribe(1, 'room', 1);
      const hub = broker.findHub(hubName);
      assert.equal(hub?.sessions.get('only')?.isConnected, true, `expiry ${expirySec}: the connected session is registered in its hub`);
      assert.deepEqual(broker.groupPage(hubName, 'room', undefined, 10).members.map((m) => [m.clientId, m.connected]), [['only', true]]);
      assert.equal(broker.disconnectClient(hubName, 'only'), true, 'found by client id');
      await again.whenClosed();
    }
    await broker.shutdown();
  });
});
