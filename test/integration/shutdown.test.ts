// Graceful shutdown of the broker process: on SIGTERM every connected client over [tcp, ws] ×
// [3.1.1, 5.0] is disconnected (5.0 with DISCONNECT 0x8B first) and the process exits with code 0.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import type { IDisconnectPacket, Packet } from 'mqtt-packet';
import { startBroker } from '../helpers/broker-process.ts';
import { close, connect, matrix, uniqueId } from '../helpers/clients.ts';
import { connectBytes } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

interface Observed {
  /** DISCONNECT packets MQTT.js reported. */
  disconnects: IDisconnectPacket[];
  closed: Promise<void>;
}

function observe(client: MqttClient): Observed {
  const disconnects: IDisconnectPacket[] = [];
  client.on('disconnect', (p: IDisconnectPacket) => disconnects.push(p));
  const closed = new Promise<void>((resolve) => { client.once('close', () => resolve()); });
  return { disconnects, closed };
}

describe('graceful shutdown on SIGTERM', () => {
  let exitCode: number | null;
  const clients = new Map<string, { client: MqttClient; seen: Observed }>();
  const raws = new Map<string, { raw: RawPeer; packets: Promise<Packet[]> }>();

  before(async () => {
    const broker = await startBroker();
    for (const { transport, version, name } of matrix) {
      const client = await connect(broker, transport, version);
      clients.set(name, { client, seen: observe(client) });
      const raw = await RawPeer.open(broker, transport, version);
      raw.send(connectBytes({ level: version, clientId: uniqueId('raw') }));
      assert.equal((await raw.next()).cmd, 'connack');
      raws.set(name, { raw, packets: raw.closed(10_000) });
    }
    exitCode = await broker.stop();
  });

  test('the process exits with code 0', () => {
    assert.equal(exitCode, 0);
  });

  for (const { version, name } of matrix) {
    if (version === 5) {
      test(`[MQTT-3.14.4-2] ${name}: DISCONNECT 0x8B (Server shutting down), then the close`, async () => {
        const { client, seen } = clients.get(name)!;
        await seen.closed;
        assert.deepEqual(seen.disconnects.map((d) => d.reasonCode), [0x8b]);
        await close(client);
        const { packets } = raws.get(name)!;
        const got = await packets;
        assert.deepEqual(got.map((p) => p.cmd), ['disconnect'], 'exactly one DISCONNECT, nothing after it [MQTT-3.14.4-1]');
        assert.equal((got[0] as IDisconnectPacket).reasonCode, 0x8b);
        assert.equal((got[0] as IDisconnectPacket).properties?.sessionExpiryInterval, undefined); // [MQTT-3.14.2-2]
      });
    } else {
      test(`[MQTT-3.1.4-1] ${name}: the connection is closed without a packet`, async () => {
        const { client, seen } = clients.get(name)!;
        await seen.closed;
        assert.deepEqual(seen.disconnects, []);
        await close(client);
        assert.deepEqual(await raws.get(name)!.packets, []);
      });
    }
  }
});
