// A REST send to an offline persistent session is as durable as an MQTT publish: the broker answers
// 202 only once the message and its deliveries are committed, so a kill -9 right after the answers
// loses none of them. MQTT 5.0 (TCP) and 3.1.1 (WebSocket) sessions, sends to a connection (on
// `$webpubsub/server/messages`), to a user and to a group (the group's topic), some one after
// another (their order must survive) and some at once (many commits in flight at the kill).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { Inbox } from '../helpers/inbox.ts';

const HUB = 'Durable';
const SERVER_TOPIC = '$webpubsub/server/messages';
const IN_ORDER = 12;
const AT_ONCE = 30;

let db: TestDatabase;
let broker: BrokerProcess;
const run = uniqueId('rest').replace(/[^a-zA-Z0-9-]/g, '');
const group = `room/${run}`;

before(async () => {
  db = await createTestDatabase();
  broker = await startBroker(['--default-hub', HUB], {}, { databaseUrl: db.url });
});
after(async () => {
  await broker?.stop();
  await db?.drop();
});

interface Member { name: string; transport: Transport; version: Version; clientId: string; userId: string }
const members: Member[] = [
  { name: '5.0 over TCP', transport: 'tcp', version: 5, clientId: `${run}-v5`, userId: `${run}-alice` },
  { name: '3.1.1 over WebSocket', transport: 'ws', version: 4, clientId: `${run}-v4`, userId: `${run}-bob` },
];

const service = (): WebPubSubServiceClient => new WebPubSubServiceClient(broker.connectionString, HUB, { allowInsecureConnection: true });

/**
 * Start a member's client on its persistent session, with a client token for its user (the SDK's
 * MQTT token: the password over TCP, `access_token` in the WebSocket URL as Azure clients send it).
 */
async function start(m: Member): Promise<MqttClient> {
  const { token } = await service().getClientAccessToken({ clientProtocol: 'mqtt', userId: m.userId, roles: ['webpubsub.joinLeaveGroup'] });
  const opts: IClientOptions = {
    protocolVersion: m.version, reconnectPeriod: 0, connectTimeout: 5000, clientId: m.clientId, clean: false, // (3.1.1: the session persists; 5.0: Session Expiry Interval)
    ...(m.version === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
  };
  return m.transport === 'tcp'
    ? mqtt.connect(broker.mqttUrl, { ...opts, username: m.userId, password: token })
    : mqtt.connect(`${broker.wsUrl(HUB)}?access_token=${encodeURIComponent(token)}`, opts);
}

/** Resolve with the CONNACK, reject if refused or closed first. */
function connack(c: MqttClient): Promise<{ sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    c.once('connect', (p) => resolve(p));
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

test('messages a REST call was answered 202 for reach offline persistent sessions after kill -9 and a restart', async () => {
  // Persistent sessions in the group, then offline
  for (const m of members) {
    const c = await start(m);
    await connack(c);
    await c.subscribeAsync(group, { qos: 1 });
    await c.endAsync();
  }
  const sdk = service();
  // One after another: to each connection, to each user, to the group
  for (let i = 0; i < IN_ORDER; i++) {
    for (const m of members) {
      await sdk.sendToConnection(m.clientId, `conn ${i}`, { contentType: 'text/plain' });
      await sdk.sendToUser(m.userId, { n: i });
    }
    await sdk.group(group).sendToAll(`group ${i}`, { contentType: 'text/plain' });
  }
  // At once: many requests, many commits in flight
  await Promise.all(Array.from({ length: AT_ONCE }, (_, i) => sdk.sendToConnection(members[i % 2]!.clientId, `burst ${i}`, { contentType: 'text/plain' })));
  // Every send was answered 202: kill at once
  await broker.kill();
  broker = await startBroker(['--default-hub', HUB], {}, { databaseUrl: db.url });

  for (const m of members) {
    const client = await start(m);
    const inbox = new Inbox(client); // (attached before the CONNACK: a resumed session delivers right after it)
    try {
      assert.equal((await connack(client)).sessionPresent, true, `${m.name}: session present`);
      const burst = AT_ONCE / 2;
      const expected = IN_ORDER * 3 + burst;
      await inbox.until(() => inbox.items.length >= expected, `${m.name}: ${expected} messages`, 15_000);
      const server = inbox.on(SERVER_TOPIC).map((r) => r.payload);
      const fromConn = server.filter((p) => p.startsWith('conn '));
      const fromUser = server.filter((p) => p.startsWith('{'));
      const fromBurst = server.filter((p) => p.startsWith('burst '));
      assert.deepEqual(fromConn, Array.from({ length: IN_ORDER }, (_, i) => `conn ${i}`), `${m.name}: connection sends in order`);
      assert.deepEqual(fromUser.map((p) => (JSON.parse(p) as { n: number }).n), Array.from({ length: IN_ORDER }, (_, i) => i), `${m.name}: user sends in order`);
      const mine = Array.from({ length: AT_ONCE }, (_, i) => i).filter((i) => i % 2 === members.indexOf(m)).map((i) => `burst ${i}`);
      assert.deepEqual([...fromBurst].sort(), [...mine].sort(), `${m.name}: every concurrent send`);
      assert.deepEqual(inbox.on(group).map((r) => r.payload), Array.from({ length: IN_ORDER }, (_, i) => `group ${i}`), `${m.name}: group sends in order`);
      assert.ok(inbox.items.every((r) => r.qos === 1), `${m.name}: QoS 1`);
      if (m.version === 5) {
        assert.equal(inbox.on(SERVER_TOPIC).find((r) => r.payload.startsWith('{'))?.packet.properties?.contentType, 'application/json');
      }
    } finally {
      await close(client);
    }
  }
});
