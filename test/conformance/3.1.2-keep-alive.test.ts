// Keep alive (MQTT 5 §3.1.2.10, §3.2.2.3.14, §3.12) over raw TCP and WebSocket: the 1.5 × keep
// alive deadline, PINGREQ/PINGRESP, and the broker's maximum returned as Server Keep Alive.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connectBytes } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const MAX_KEEP_ALIVE = 2;

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--max-keep-alive', String(MAX_KEEP_ALIVE)]); });
after(async () => { await broker.stop(); });

const transports: Transport[] = ['tcp', 'ws'];
const versions: Version[] = [4, 5];

/**
 * Connect a raw client with `keepAlive` seconds; resolves with the accepted CONNACK and the time
 * just before CONNECT was sent (the broker's deadline cannot start earlier than that).
 */
async function connectRaw(transport: Transport, version: Version, keepAlive: number): Promise<{ c: RawPeer; connack: IConnackPacket; sentAt: number }> {
  const c = await RawPeer.open(broker, transport, version);
  const sentAt = Date.now();
  c.send(connectBytes({ level: version, keepAlive, clientId: uniqueId('ka') }));
  const connack = (await c.next()) as IConnackPacket;
  assert.equal(connack.cmd, 'connack');
  assert.equal(connack.reasonCode ?? connack.returnCode, 0);
  return { c, connack, sentAt };
}

/**
 * Wait for the broker to drop a silent client. A 5.0 client must get DISCONNECT 0x8D (Keep
 * Alive timeout) first; a 3.1.1 client just sees the close. `lastSentAt` is when the client last
 * sent a packet: the close must come 1.5 × keep alive after it, not earlier, and not much later.
 */
async function expectKeepAliveClose(c: RawPeer, version: Version, keepAliveSec: number, lastSentAt: number): Promise<void> {
  const deadlineMs = keepAliveSec * 1500;
  // Generous upper bound: the broker checks every 250 ms, and loaded CI machines are slow
  const packets = await c.closed(deadlineMs + 3000 - (Date.now() - lastSentAt));
  const elapsed = Date.now() - lastSentAt;
  assert.ok(elapsed >= deadlineMs, `disconnected ${elapsed} ms after the last packet, before 1.5 × keep alive`);
  if (version === 5) {
    assert.equal(packets.length, 1, `expected one DISCONNECT, got ${packets.map((p) => p.cmd).join(', ')}`);
    assert.equal(packets[0]!.cmd, 'disconnect');
    assert.equal((packets[0] as IDisconnectPacket).reasonCode, 0x8d);
    assert.equal((packets[0] as IDisconnectPacket).properties?.sessionExpiryInterval, undefined); // [MQTT-3.14.2-2]
  } else {
    assert.deepEqual(packets, []);
  }
}

/** Send PINGREQ every 500 ms for `ms` and expect each PINGRESP; returns when the last PINGREQ left. */
async function keepPinging(c: RawPeer, ms: number): Promise<number> {
  let lastSentAt = Date.now();
  for (let i = 0; i < ms / 500; i++) {
    await new Promise((r) => setTimeout(r, 500));
    lastSentAt = Date.now();
    c.send('c0 00');
    assert.equal((await c.next()).cmd, 'pingresp', `PINGRESP ${i + 1}`);
  }
  return lastSentAt;
}

// The four combinations run side by side: most of this file is waiting for deadlines
describe('keep alive', { concurrency: true }, () => {
  for (const transport of transports) {
    for (const version of versions) {
      const name = `${transport} ${version === 5 ? 'v5' : 'v3.1.1'}`;
      describe(`keep alive (${name})`, () => {
        test('[MQTT-3.12.4-1] PINGREQ gets PINGRESP', async () => {
          const { c } = await connectRaw(transport, version, 0);
          c.send('c0 00');
          assert.equal((await c.next()).cmd, 'pingresp');
          c.send('c0 00 c0 00');
          assert.equal((await c.next()).cmd, 'pingresp');
          assert.equal((await c.next()).cmd, 'pingresp');
          c.destroy();
        });

        test('[MQTT-3.1.2-22] a client silent for 1.5 × keep alive (1 s) is disconnected', async () => {
          const { c, sentAt } = await connectRaw(transport, version, 1);
          await expectKeepAliveClose(c, version, 1, sentAt);
        });

        test('[MQTT-3.1.2-22] PINGREQ every 0.5 s keeps a 2 s keep alive connection open past 1.5 × keep alive', async () => {
          const { c } = await connectRaw(transport, version, 2);
          const lastSentAt = await keepPinging(c, 3500);
          assert.equal(c.isClosed, false);
          // Then silence: the deadline counts from the last PINGREQ
          await expectKeepAliveClose(c, version, 2, lastSentAt);
        });

        test('[MQTT-3.1.2-22] any packet resets the keep alive deadline, not only PINGREQ', async () => {
          const { c } = await connectRaw(transport, version, 2);
          const topic = `ka/${uniqueId()}`;
          for (let i = 0; i < 7; i++) {
            await new Promise((r) => setTimeout(r, 500));
            c.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
          }
          // Nothing observable comes back for QoS 0; the connection must still be usable
          c.send('c0 00');
          assert.equal((await c.next()).cmd, 'pingresp');
          assert.equal(c.isClosed, false);
          c.destroy();
        });

        if (version === 5) {
          for (const asked of [60, 0]) {
            test(`[MQTT-3.2.2-21] keep alive ${asked} above the broker maximum gets Server Keep Alive ${MAX_KEEP_ALIVE}`, async () => {
              const { c, connack } = await connectRaw(transport, version, asked);
              assert.equal(connack.properties?.serverKeepAlive, MAX_KEEP_ALIVE);
              c.destroy();
            });
          }

          test(`[MQTT-3.2.2-22] keep alive 1, within the broker maximum, gets no Server Keep Alive`, async () => {
            const { c, connack } = await connectRaw(transport, version, 1);
            assert.equal(connack.properties?.serverKeepAlive, undefined);
            c.destroy();
          });

          test(`[MQTT-3.1.2-22] a client given Server Keep Alive ${MAX_KEEP_ALIVE} is held to it`, async () => {
            const { c, connack, sentAt } = await connectRaw(transport, version, 60);
            assert.equal(connack.properties?.serverKeepAlive, MAX_KEEP_ALIVE);
            await expectKeepAliveClose(c, version, MAX_KEEP_ALIVE, sentAt);
          });
        }
      });
    }
  }
});
