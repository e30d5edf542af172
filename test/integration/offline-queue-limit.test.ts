// --max-queued-messages bounds what an offline persistent session queues: messages beyond it are
// dropped (and audited, see audit-events.test.ts), whatever the publishers' pipelining.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, connect, uniqueId } from '../helpers/clients.ts';
import { Inbox } from '../helpers/inbox.ts';
import mqtt from 'mqtt';

const MAX_QUEUED = 5;

let broker: BrokerProcess;
before(async () => { broker = await startBroker(['--max-queued-messages', String(MAX_QUEUED)]); });
after(async () => { await broker.stop(); });

/** An offline persistent session subscribed to `topic`; `resume()` reconnects and returns what it was sent, up to a barrier. */
async function offlineSubscriber(topic: string): Promise<{ resume(): Promise<string[]> }> {
  const clientId = uniqueId('queue-sub');
  const opts = { clientId, clean: false, properties: { sessionExpiryInterval: 600 } };
  const sub = await connect(broker, 'tcp', 5, opts);
  await sub.subscribeAsync([topic, `${topic}/barrier`], { qos: 1 });
  await sub.endAsync();
  return {
    async resume() {
      // Listen before the CONNACK: a resumed session's messages follow it at once
      const c = mqtt.connect(broker.mqttUrl, { protocolVersion: 5, reconnectPeriod: 0, ...opts });
      const inbox = new Inbox(c);
      try {
        await new Promise((resolve, reject) => {
          c.once('connect', resolve);
          c.once('error', reject);
        });
        // Barrier: published after the reconnect, so it comes after everything that was queued
        const pub = await connect(broker, 'tcp', 5);
        await pub.publishAsync(`${topic}/barrier`, 'barrier', { qos: 1 });
        await close(pub);
        await inbox.next(`${topic}/barrier`);
        return inbox.on(topic).map((m) => m.payload);
      } finally {
        await close(c);
      }
    },
  };
}

describe('offline queue limit (--max-queued-messages)', () => {
  test('one publish at a time: the first MAX_QUEUED are kept, the rest dropped', async () => {
    const topic = `queue/${uniqueId()}`;
    const sub = await offlineSubscriber(topic);
    const pub = await connect(broker, 'tcp', 5);
    for (let i = 0; i < 3 * MAX_QUEUED; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
    await close(pub);
    assert.deepEqual(await sub.resume(), Array.from({ length: MAX_QUEUED }, (_, i) => `m${i}`));
  });

  test('pipelined publishes: still no more than MAX_QUEUED kept', async () => {
    const topic = `queue/${uniqueId()}`;
    const sub = await offlineSubscriber(topic);
    const pub = await connect(broker, 'tcp', 5);
    await Promise.all(Array.from({ length: 20 * MAX_QUEUED }, (_, i) => pub.publishAsync(topic, `m${i}`, { qos: 1 })));
    await close(pub);
    const got = await sub.resume();
    assert.equal(got.length, MAX_QUEUED, `kept ${got.length} with a limit of ${MAX_QUEUED}`);
  });
});
