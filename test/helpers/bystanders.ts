// Clients that stay connected while a test misbehaves on other connections: one per protocol version,
// each subscribed to its own topic. `assertUnaffected` proves the broker process is alive and that they
// still exchange messages.
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import type { BrokerProcess } from './broker-process.ts';
import { close, collect, connect, uniqueId, type Transport } from './clients.ts';

export class Bystanders {
  private readonly list: Array<{ client: MqttClient; topic: string }> = [];

  private constructor(private readonly broker: BrokerProcess) {}

  static async connect(broker: BrokerProcess, transport: Transport): Promise<Bystanders> {
    const b = new Bystanders(broker);
    for (const version of [4, 5] as const) {
      const topic = `ok/${uniqueId()}`;
      const client = await connect(broker, transport, version, { keepalive: 0 });
      await client.subscribeAsync(topic, { qos: 1 });
      b.list.push({ client, topic });
    }
    return b;
  }

  async assertUnaffected(): Promise<void> {
    assert.equal(this.broker.proc.exitCode, null, 'broker process exited');
    assert.equal(this.broker.proc.signalCode, null, 'broker process was killed');
    for (const [i, b] of this.list.entries()) {
      assert.equal(b.client.connected, true, 'a bystander lost its connection');
      const other = this.list[(i + 1) % this.list.length]!;
      const got = collect(b.client, 1, 3000);
      const payload = uniqueId('still-here');
      await other.client.publishAsync(b.topic, payload, { qos: 1 });
      assert.equal((await got)[0]!.payload.toString(), payload);
    }
  }

  async close(): Promise<void> {
    await close(...this.list.map((b) => b.client));
  }
}
