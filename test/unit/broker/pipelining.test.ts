// Packets as the network delivers them, in-process: many packets in one chunk, one packet in many
// chunks, packets sent before the CONNACK, and two connections racing for one client id. Replies
// leave in the order their packets arrived whatever waits on a commit.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { Authenticator } from '../../../src/auth/auth.ts';
import {
  connectPersistent, connectWith, disconnectedWith, engine, publishesReach, text, versionName, VERSIONS, type Version,
} from './engine-steps.ts';

const bytes = (version: Version, ...packets: Packet[]): Buffer =>
  Buffer.concat(packets.map((p) => mqttPacket.generate(p, { protocolVersion: version })));

function connectPacket(version: Version, clientId: string): Packet {
  return {
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: false, keepalive: 0, clientId,
    ...(version === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
  } as Packet;
}

describe('packets as they arrive', () => {
  for (const version of VERSIONS) {
    test(`§3.1.4 [MQTT-4.6.0-2] CONNECT, SUBSCRIBE, PUBLISH and PINGREQ in one chunk: answered in that order (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      c.sendBytes(bytes(version,
        connectPacket(version, 'eager'),
        { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'self/t', qos: 1 }] } as Packet,
        { cmd: 'publish', topic: 'self/t', payload: Buffer.from('to-myself'), qos: 1, messageId: 2, retain: false, dup: false },
        { cmd: 'pingreq' },
      ));
      await c.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP');
      const replies = c.packets.filter((p) => p.cmd !== 'publish').map((p) => p.cmd);
      assert.deepEqual(replies, ['connack', 'suback', 'puback', 'pingresp']);
      assert.deepEqual((await publishesReach(c, 1)).map(text), ['to-myself'], 'the PUBLISH did not see the SUBSCRIBE before it');
      await e.stop();
    });
  }

  for (const version of VERSIONS) {
    test(`[MQTT-4.6.0-2] with an asynchronous authenticator, packets sent behind CONNECT wait for it and are all answered in order (${versionName(version)})`, async () => {
      // The decision comes a turn later (as a token or password check does): the SUBSCRIBE and
      // PUBLISH queued behind the CONNECT must wait for it and for the session's commit, not be dropped
      const later: Authenticator = {
        authenticate: () => new Promise((resolve) => setImmediate(() => resolve({ ok: true, principal: { userId: undefined, roles: [], method: 'test' } }))),
      };
      const e = await engine({}, undefined, undefined, later);
      const c = e.client(version);
      c.sendBytes(bytes(version,
        connectPacket(version, 'eager-async'),
        { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'self/t', qos: 1 }] } as Packet,
        { cmd: 'publish', topic: 'self/t', payload: Buffer.from('to-myself'), qos: 1, messageId: 2, retain: false, dup: false },
        { cmd: 'pingreq' },
      ));
      await c.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP');
      assert.deepEqual(c.packets.filter((p) => p.cmd !== 'publish').map((p) => p.cmd), ['connack', 'suback', 'puback', 'pingresp']);
      assert.deepEqual((await publishesReach(c, 1)).map(text), ['to-myself']);
      await e.stop();
    });
  }

  test('a PUBLISH split into one-byte chunks is read whole', async () => {
    const e = await engine();
    const sub = e.client(5);
    await connectWith(sub, 'sub');
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'split/t', qos: 0, nl: false, rap: false, rh: 0 }] } as Packet);
    await sub.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    const pub = e.client(5);
    await connectWith(pub, 'pub');
    const wire = bytes(5, { cmd: 'publish', topic: 'split/t', payload: Buffer.from('x'.repeat(300)), qos: 0, retain: false, dup: false });
    for (const b of wire) pub.sendBytes(Buffer.from([b]));
    const [p] = await publishesReach(sub, 1);
    assert.equal(text(p!), 'x'.repeat(300));
    await e.stop();
  });

  for (const version of VERSIONS) {
    test(`[MQTT-3.1.0-1] a first packet other than CONNECT closes the connection without an answer (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      c.sendBytes(bytes(version, { cmd: 'pingreq' }));
      await c.whenClosed();
      assert.deepEqual(c.packets, []);
      await e.stop();
    });

    test(`[MQTT-3.1.0-2] a second CONNECT is a Protocol Error (${versionName(version)})`, async () => {
      const e = await engine();
      const c = e.client(version);
      await connectWith(c, 'twice');
      c.sendBytes(bytes(version, connectPacket(version, 'twice')));
      if (version === 5) assert.equal(await disconnectedWith(c), 0x82);
      else await c.whenClosed();
      await e.stop();
    });
  }

  test('[MQTT-3.1.4-3] two connections racing for one client id: the later one wins, with the session', async () => {
    const e = await engine();
    const first = e.client(5);
    const second = e.client(5);
    first.sendBytes(bytes(5, connectPacket(5, 'raced')));
    second.sendBytes(bytes(5, connectPacket(5, 'raced')));
    const ack = await second.waitFor((p) => p.cmd === 'connack', 'CONNACK') as Extract<Packet, { cmd: 'connack' }>;
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, true, 'the second connection did not take over the first one\'s session');
    await first.whenClosed();
    const third = e.client(5);
    assert.equal((await connectPersistent(third, 'raced')).sessionPresent, true);
    await e.stop();
  });
});
