// PUBLISH / SUBSCRIBE basics across [tcp, ws] × [3.1.1, 5.0] with real MQTT.js clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, matrix, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

for (const { transport, version, name } of matrix) {
  describe(`publish (${name})`, () => {
    for (const qos of [0, 1, 2] as const) {
      test(`[MQTT-4.3] QoS ${qos} message reaches a QoS 2 subscriber at QoS ${qos}`, async () => {
        const topic = `t/${uniqueId()}`;
        const sub = await connect(broker, transport, version);
        const pub = await connect(broker, transport, version);
        await sub.subscribeAsync(topic, { qos: 2 });
        const got = collect(sub, 1);
        await pub.publishAsync(topic, `hello ${qos}`, { qos });
        const [m] = await got;
        assert.equal(m!.topic, topic);
        assert.equal(m!.payload.toString(), `hello ${qos}`);
        assert.equal(m!.packet.qos, qos);
        await close(sub, pub);
      });
    }

    test('[MQTT-3.8.4-8] QoS is downgraded to the granted QoS', async () => {
      const topic = `t/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      await sub.subscribeAsync(topic, { qos: 1 });
      const got = collect(sub, 1);
      await pub.publishAsync(topic, 'x', { qos: 2 });
      assert.equal((await got)[0]!.packet.qos, 1);
      await close(sub, pub);
    });

    test('[MQTT-4.6.0-5] messages of one publisher arrive in order per topic and QoS', async () => {
      const topic = `t/${uniqueId()}`;
      const sub = await connect(broker, transport, version);
      const pub = await connect(broker, transport, version);
      await sub.subscribeAsync(topic, { qos: 1 });
      const n = 200;
      const got = collect(sub, n);
      await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync(topic, String(i), { qos: 1 })));
      const payloads = (await got).map((m) => Number(m.payload.toString()));
      assert.deepEqual(payloads, Array.from({ length: n }, (_, i) => i));
      await close(sub, pub);
    });
  });
}
