// Hubs (/clients/mqtt/hubs/{hub}) are separate namespaces: the same client id and the same topic in
// two hubs are two sessions and two retained messages, before and after a restart on the same database.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, uniqueId } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { Inbox } from '../helpers/inbox.ts';

const run = uniqueId('iso').replace(/[^a-zA-Z0-9]/g, '_'); // hub names allow no '-'
const HUBS = [`hub_a_${run}`, `hub_b_${run}`];
const CLIENT_ID = `same-id-${run}`;
const TOPIC = `iso/${run}`;

let db: TestDatabase;
let broker: BrokerProcess | undefined;
before(async () => { db = await createTestDatabase(); });
after(async () => {
  await broker?.stop();
  await db?.drop();
});

function connectHub(b: BrokerProcess, hub: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(b.wsUrl(hub), { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('iso'), ...opts });
}

/** Subscribe to `filter` and return what arrives, up to a barrier message published on the same hub after the SUBACK. */
async function retainedFor(b: BrokerProcess, hub: string, filter: string): Promise<Array<[string, string, boolean]>> {
  const c = await connectHub(b, hub);
  const inbox = new Inbox(c);
  try {
    await c.subscribeAsync([filter, `${TOPIC}-barrier`], { qos: 1 });
    await c.publishAsync(`${TOPIC}-barrier`, 'barrier', { qos: 1 });
    await inbox.next(`${TOPIC}-barrier`);
    return inbox.items.filter((m) => m.topic !== `${TOPIC}-barrier`).map((m) => [m.topic, m.payload, m.retain]);
  } finally {
    await close(c);
  }
}

describe('hub isolation', { concurrency: false }, () => {
  test('same client id and same retained topic in two hubs, before and after a restart', async () => {
    broker = await startBroker([], {}, { databaseUrl: db.url });
    // The same client id in both hubs: two persistent sessions, each subscribed to its own filter
    for (const [i, hub] of HUBS.entries()) {
      const c = mqtt.connect(broker.wsUrl(hub), { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: CLIENT_ID, clean: false, properties: { sessionExpiryInterval: 3600 } });
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
      });
      // The other hub's session with this id is not this one
      assert.equal(connack.sessionPresent, false, `${hub}: a new session`);
      await c.subscribeAsync(`${TOPIC}/only-${i}`, { qos: 1 });
      await close(c);
    }
    // The same topic retained in both hubs, with different payloads
    for (const hub of HUBS) {
      const p = await connectHub(broker, hub);
      await p.publishAsync(TOPIC, `retained in ${hub}`, { qos: 1, retain: true });
      // Queued for the offline session of this hub only
      await p.publishAsync(`${TOPIC}/only-0`, `queued in ${hub}`, { qos: 1 });
      await p.publishAsync(`${TOPIC}/only-1`, `queued in ${hub}`, { qos: 1 });
      await close(p);
    }

    for (const life of ['before the restart', 'after the restart']) {
      if (life === 'after the restart') {
        await broker.stop();
        broker = await startBroker([], {}, { databaseUrl: db.url });
      }
      for (const hub of HUBS) {
        assert.deepEqual(await retainedFor(broker, hub, TOPIC), [[TOPIC, `retained in ${hub}`, true]], `${hub} ${life}`);
      }
      // The default hub has neither retained message
      const def = await mqtt.connectAsync(broker.wsUrl(), { protocolVersion: 5, reconnectPeriod: 0, clientId: uniqueId('iso-default') });
      const defInbox = new Inbox(def);
      await def.subscribeAsync([TOPIC, `${TOPIC}-barrier`], { qos: 1 });
      await def.publishAsync(`${TOPIC}-barrier`, 'barrier', { qos: 1 });
      await defInbox.next(`${TOPIC}-barrier`);
      assert.deepEqual(defInbox.on(TOPIC), [], `default hub ${life}`);
      await close(def);
    }

    // Each hub's session resumes with its own subscription and its own queued messages, after the restart
    for (const [i, hub] of HUBS.entries()) {
      // The inbox listens before the CONNACK: a resumed session's messages follow it at once
      const c = mqtt.connect(broker.wsUrl(hub), {
        protocolVersion: 5, reconnectPeriod: 0, clientId: CLIENT_ID, clean: false, properties: { sessionExpiryInterval: 3600 },
      });
      const inbox = new Inbox(c);
      try {
        const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
          c.once('connect', resolve);
          c.once('error', reject);
        });
        assert.equal(connack.sessionPresent, true, `${hub}: session present`);
        await c.subscribeAsync(`${TOPIC}-barrier`, { qos: 1 });
        await c.publishAsync(`${TOPIC}-barrier`, 'barrier', { qos: 1 });
        await inbox.next(`${TOPIC}-barrier`);
        assert.deepEqual(inbox.items.filter((m) => m.topic !== `${TOPIC}-barrier`).map((m) => [m.topic, m.payload]), [[`${TOPIC}/only-${i}`, `queued in ${hub}`]], hub);
      } finally {
        await close(c);
      }
    }
  });
});
