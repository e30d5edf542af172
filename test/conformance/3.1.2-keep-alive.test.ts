// Keep alive (MQTT 5 §3.1.2.10, §3.2.2.3.14, §3.12) over raw TCP and WebSocket: the 1.5 × keep
// alive deadline, PINGREQ/PINGRESP, and the broker's maximum returned as Server Keep Alive.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { connectBytes, openRaw, type RawMqtt } from '../helpers/raw-mqtt.ts';

const MAX_KEEP_ALIVE = 2;

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--max-keep-alive', String(MAX_KEEP_ALIVE)]); });
after(async () => { await broker.stop(); });

const transports: Transport[] = ['tcp', 'ws'];
const versions: Version[] = [4, 5];

/** Connect a raw client with `keepAlive` seconds; resolves with the accepted CONNACK. */
async function connectRaw(transport: Transport, version: Version, keepAlive: number): Promise<{ c: RawMqtt; connack: IConnackPacket }> {
  const c = await openRaw(broker, transport, version);
  c.send(connectBytes({ level: version, keepAlive, clientId: uniqueId('ka') }));
  const connack = (await c.next()) as IConnackPacket;
  assert.equal(connack.cmd, 'connack');
  assert.equal(connack.reasonCode ?? connack.returnCode, 0);
  return { c, connack };
}

/**
 * Wait for the broker to drop a silent client; returns how long that took. A 5.0 client must
 * get DISCONNECT 0x8D (Keep Alive timeout) first; a 3.1.1 client just sees the close.
 */
async function expectKeepAliveClose(c: RawMqtt, version: Version, timeoutMs: number): Promise<number> {
  const started = Date.now();
  const packets = await c.closed(timeoutMs);
  const elapsed = Date.now() - started;
  if (version === 5) {
    assert.equal(packets.length, 1, `expected one DISCONNECT, got ${packets.map((p) => p.cmd).join(', ')}`);
    assert.equal(packets[0]!.cmd, 'disconnect');
    assert.equal((packets[0] as IDisconnectPacket).reasonCode, 0x8d);
    assert.equal((packets[0] as IDisconnectPacket).properties?.sessionExpiryInterval, undefined); // [MQTT-3.14.2-2]
  } else {
    assert.deepEqual(packets, []);
  }
  return elapsed;
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
          c.end();
        });

        test('[MQTT-3.1.2-22] a client silent for 1.5 × keep alive (1 s) is disconnected', async () => {
          const { c } = await connectRaw(transport, version, 1);
          const elapsed = await expectKeepAliveClose(c, version, 4000);
          // 1.5 s after CONNACK; the broker checks deadlines every 250 ms
          assert.ok(elapsed >= 1400, `disconnected after ${elapsed} ms, before 1.5 × keep alive`);
          assert.ok(elapsed < 2500, `disconnected after ${elapsed} ms`);
        });

        test('[MQTT-3.1.2-22] PINGREQ every 0.5 s keeps a 1 s keep alive connection open past 1.5 s', async () => {
          const { c } = await connectRaw(transport, version, 1);
          for (let i = 0; i < 5; i++) {
            await new Promise((r) => setTimeout(r, 500));
            c.send('c0 00');
            assert.equal((await c.next()).cmd, 'pingresp', `PINGRESP ${i + 1}`);
          }
          assert.equal(c.isClosed, false);
          // Then silence: the deadline counts from the last PINGREQ
          const elapsed = await expectKeepAliveClose(c, version, 4000);
          assert.ok(elapsed >= 1300, `disconnected ${elapsed} ms after the last PINGREQ`);
        });

        test('[MQTT-3.1.2-22] any packet resets the keep alive deadline, not only PINGREQ', async () => {
          const { c } = await connectRaw(transport, version, 1);
          const topic = `ka/${uniqueId()}`;
          for (let i = 0; i < 4; i++) {
            await new Promise((r) => setTimeout(r, 500));
            c.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
          }
          // Nothing observable comes back for QoS 0; the connection must still be usable
          c.send('c0 00');
          assert.equal((await c.next()).cmd, 'pingresp');
          c.end();
        });

        if (version === 5) {
          for (const asked of [60, 0]) {
            test(`[MQTT-3.2.2-21] keep alive ${asked} above the broker maximum gets Server Keep Alive ${MAX_KEEP_ALIVE}`, async () => {
              const { c, connack } = await connectRaw(transport, version, asked);
              assert.equal(connack.properties?.serverKeepAlive, MAX_KEEP_ALIVE);
              c.end();
            });
          }

          test(`[MQTT-3.2.2-22] keep alive 1, within the broker maximum, gets no Server Keep Alive`, async () => {
            const { c, connack } = await connectRaw(transport, version, 1);
            assert.equal(connack.properties?.serverKeepAlive, undefined);
            c.end();
          });

          test(`[MQTT-3.1.2-22] a client given Server Keep Alive ${MAX_KEEP_ALIVE} is held to it`, async () => {
            const { c, connack } = await connectRaw(transport, version, 60);
            assert.equal(connack.properties?.serverKeepAlive, MAX_KEEP_ALIVE);
            const elapsed = await expectKeepAliveClose(c, version, 6000);
            assert.ok(elapsed >= MAX_KEEP_ALIVE * 1500 - 100, `disconnected after ${elapsed} ms`);
            assert.ok(elapsed < MAX_KEEP_ALIVE * 1500 + 1000, `disconnected after ${elapsed} ms`);
          });
        }
      });
    }
  }
});
