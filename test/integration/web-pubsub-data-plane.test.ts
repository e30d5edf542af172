// The Web PubSub data plane driven by the official server SDK (WebPubSubServiceClient and its group
// client) against MQTT.js clients, 3.1.1 and 5.0, persistent and not: what each client actually
// receives (topic, QoS, content type, expiry) and what changes (subscriptions, sessions).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { odata, WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, expectNoMessage, pubCode, uniqueId, type Version } from '../helpers/clients.ts';
import { serverDisconnect } from '../helpers/inbox.ts';
import { rest } from '../helpers/rest.ts';
import { auditRows } from '../helpers/audit.ts';
import pg from 'pg';

const HUB = 'Plane';
const SERVER_TOPIC = '$webpubsub/server/messages';

let broker: BrokerProcess & { databaseUrl: string | undefined };
let service: WebPubSubServiceClient;
let db: pg.Client;

before(async () => {
  broker = await startBroker(['--default-hub', HUB]);
  service = new WebPubSubServiceClient(broker.connectionString, HUB, { allowInsecureConnection: true });
  db = new pg.Client({ connectionString: broker.databaseUrl });
  await db.connect();
});
after(async () => {
  await db?.end();
  await broker?.stop();
});

/** An MQTT client with a token for `userId` (TCP, token as password) and `roles` (none by default). */
async function client(version: Version, userId?: string, opts: IClientOptions = {}, roles: string[] = []): Promise<MqttClient> {
  const t = await service.getClientAccessToken({ clientProtocol: 'mqtt', roles, ...(userId ? { userId } : {}) });
  return mqtt.connectAsync(broker.mqttUrl, {
    protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('dp'), username: 'u', password: t.token, ...opts,
  });
}

const id = (c: MqttClient): string => String(c.options.clientId);

describe('sends', () => {
  test('sendToAll: JSON, text and binary reach 3.1.1 and 5.0 clients on $webpubsub/server/messages at QoS 1, with the content type (5.0)', async () => {
    const a = await client(5);
    const b = await client(4);
    const gotA = collect(a, 3);
    const gotB = collect(b, 3);
    await service.sendToAll({ hello: 'world' });
    await service.sendToAll('plain text', { contentType: 'text/plain' });
    await service.sendToAll(Buffer.from([0, 1, 2, 255]));
    const [ra, rb] = [await gotA, await gotB];
    assert.deepEqual(ra.map((m) => [m.topic, m.packet.qos, m.packet.properties?.contentType, m.payload.toString('hex')]), [
      [SERVER_TOPIC, 1, 'application/json', Buffer.from('{"hello":"world"}').toString('hex')],
      [SERVER_TOPIC, 1, 'text/plain', Buffer.from('plain text').toString('hex')],
      [SERVER_TOPIC, 1, 'application/octet-stream', '000102ff'],
    ]);
    assert.deepEqual(rb.map((m) => [m.topic, m.packet.qos, m.payload.toString('hex')]), ra.map((m) => [m.topic, 1, m.payload.toString('hex')]));
    // Each call is audited: who, what, the answer (never the body)
    const rows = await auditRows(db, "event = 'rest_call' AND detail->>'route' = '/hubs/:hub/:send'", [], 3);
    assert.deepEqual(rows.slice(0, 3).map((r) => [r.actor, r.reason_code, r.detail?.['method']]), Array(3).fill(['key:primary', 202, 'POST']));
    await close(a, b);
  });

  test('sendToAll with excluded connections, an OData filter and a TTL (→ Message Expiry Interval)', async () => {
    const a = await client(5, 'ann');
    const b = await client(5, 'bob');
    const c = await client(5, 'cat');
    const gotC = collect(c, 1);
    const quietA = expectNoMessage(a, 500);
    const quietB = expectNoMessage(b, 500);
    await service.sendToAll('only cat', { contentType: 'text/plain', excludedConnections: [id(a)], filter: odata`userId ne ${'bob'}`, messageTtlSeconds: 60 });
    const [m] = await gotC;
    assert.equal(m!.payload.toString(), 'only cat');
    const expiry = m!.packet.properties?.messageExpiryInterval ?? 0;
    assert.ok(expiry > 0 && expiry <= 60, `message expiry ${expiry}`);
    assert.equal(await quietA, true);
    assert.equal(await quietB, true);
    await close(a, b, c);
  });

  test('a bad filter is 400 InvalidFilter; an unsupported content type 415', async () => {
    const r = await rest(broker, 'POST', `/api/hubs/${HUB}/:send?api-version=2024-12-01&filter=${encodeURIComponent('userId eq')}`, { body: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('x-ms-error-code'), 'InvalidFilter');
    await assert.rejects(service.sendToAll('x', { contentType: 'text/plain', filter: 'not length(userId) gt 5' }), (e: unknown) => (e as { statusCode?: number }).statusCode === 400);
  });

  test('sendToUser and sendToConnection reach only those sessions; an offline persistent session gets it on reconnect', async () => {
    const u1 = await client(5, 'user-1');
    const other = await client(5, 'user-2');
    const got = collect(u1, 1);
    const quiet = expectNoMessage(other, 500);
    await service.sendToUser('user-1', { to: 'user-1' });
    assert.deepEqual(JSON.parse((await got)[0]!.payload.toString()), { to: 'user-1' });
    assert.equal(await quiet, true);
    // Persistent 3.1.1 session, offline when the message is sent
    const clientId = uniqueId('offline');
    const p = await client(4, undefined, { clientId, clean: false });
    await p.endAsync();
    await service.sendToConnection(clientId, 'while you were away', { contentType: 'text/plain' });
    const again = mqtt.connect(broker.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, clientId, clean: false, username: 'u', password: (await service.getClientAccessToken({ clientProtocol: 'mqtt' })).token });
    const [m] = await collect(again, 1);
    assert.deepEqual([m!.topic, m!.payload.toString(), m!.packet.qos], [SERVER_TOPIC, 'while you were away', 1]);
    await close(u1, other, again);
  });

  test('group(g).sendToAll reaches the subscribers of topic g at their granted QoS', async () => {
    const group = `news/${uniqueId()}`;
    const sub = await client(5);
    const sub0 = await client(4, undefined, {}, ['webpubsub.joinLeaveGroup']);
    await service.group(group).addConnection(id(sub)); // QoS 1 subscription
    await sub0.subscribeAsync(group, { qos: 0 }); // its own subscription at QoS 0
    const got = collect(sub, 1);
    const got0 = collect(sub0, 1);
    await service.group(group).sendToAll('headline', { contentType: 'text/plain' });
    const [m] = await got;
    assert.deepEqual([m!.topic, m!.payload.toString(), m!.packet.qos], [group, 'headline', 1]);
    const [m0] = await got0;
    assert.deepEqual([m0!.topic, m0!.payload.toString(), m0!.packet.qos], [group, 'headline', 0], 'downgraded to the granted QoS');
    await close(sub, sub0);
  });
});

describe('groups, users and connections', () => {
  test('addConnection / removeConnection / groupExists / listConnections (paged)', async () => {
    const group = `room/${uniqueId()}`;
    const g = service.group(group);
    const clients = await Promise.all([client(5, 'p1'), client(5, 'p2'), client(4, 'p3')]);
    assert.equal(await service.groupExists(group), false);
    for (const c of clients) await g.addConnection(id(c));
    assert.equal(await service.groupExists(group), true);
    const listed: Array<{ connectionId: string; userId?: string }> = [];
    for await (const m of await g.listConnections({ maxPageSize: 2 } as never)) listed.push(m);
    assert.deepEqual(listed.map((m) => m.connectionId).sort(), clients.map(id).sort());
    assert.deepEqual(listed.map((m) => m.userId).sort(), ['p1', 'p2', 'p3']);
    // Subscribed for real: a publish to the group topic reaches them
    const got = collect(clients[0]!, 1);
    await g.sendToAll('hi', { contentType: 'text/plain' });
    assert.equal((await got)[0]!.topic, group);
    await g.removeConnection(id(clients[0]!));
    const quiet = expectNoMessage(clients[0]!, 400);
    await g.sendToAll('again', { contentType: 'text/plain' });
    assert.equal(await quiet, true);
    await assert.rejects(g.addConnection('no-such-connection'), (e: unknown) => (e as { statusCode?: number }).statusCode === 404);
    await close(...clients);
  });

  test('addUser / removeUser / removeUserFromAllGroups / userExists / connectionExists', async () => {
    const user = `u-${uniqueId()}`;
    const c = await client(5, user);
    assert.equal(await service.userExists(user), true);
    assert.equal(await service.userExists('nobody-here'), false);
    assert.equal(await service.connectionExists(id(c)), true);
    assert.equal(await service.connectionExists('nobody-here'), false);
    await service.group('ga').addUser(user);
    await service.group('gb').addUser(user);
    assert.equal(await service.groupExists('ga'), true);
    await service.group('ga').removeUser(user);
    assert.equal(await service.groupExists('ga'), false);
    await service.removeUserFromAllGroups(user);
    assert.equal(await service.groupExists('gb'), false);
    await close(c);
  });

  test('long names: a 250-byte client id and a 300-character group with / in it (%2F in the path)', async () => {
    const longId = `long-${'x'.repeat(245)}`;
    const c = await client(5, undefined, { clientId: longId });
    const group = `deep/${'g'.repeat(290)}/end`;
    await service.group(group).addConnection(longId);
    assert.equal(await service.groupExists(group), true);
    assert.equal(await service.connectionExists(longId), true);
    const got = collect(c, 1);
    await service.group(group).sendToAll('far', { contentType: 'text/plain' });
    assert.equal((await got)[0]!.topic, group);
    await close(c);
  });

  test('group names that are not exact topics (+, #, $share/) are refused with 400', async () => {
    const c = await client(5);
    for (const g of ['a/+', 'a/#', '$share/x/y']) {
      await assert.rejects(service.group(g).addConnection(id(c)), (e: unknown) => (e as { statusCode?: number }).statusCode === 400, g);
    }
    await close(c);
  });

  test('requests refused for their token write no audit row', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await rest(broker, 'POST', `/api/hubs/${HUB}/:send?api-version=2024-12-01`, { key: 'not-the-key-0123456789', body: 'x' })).status, 401);
      assert.equal((await rest(broker, 'POST', `/api/hubs/${HUB}/:send?api-version=2024-12-01`, { key: null, body: 'x' })).status, 401);
    }
    // A later accepted call's row is there: the refused ones would have been written before it
    const ok = await rest(broker, 'POST', `/api/hubs/${HUB}/groups/probe/:closeConnections?api-version=2024-12-01&reason=audit-probe`);
    assert.equal(ok.status, 204);
    await auditRows(db, "event = 'rest_call' AND detail->>'route' = '/hubs/:hub/groups/:group/:closeConnections'", [], 1);
    const refused = await db.query("SELECT count(*) FROM audit_events WHERE event = 'rest_call' AND reason_code = 401");
    assert.equal(Number(refused.rows[0].count), 0);
  });

  test('removeConnectionFromAllGroups drops every subscription of the session', async () => {
    const c = await client(5);
    const groups = [`all/${uniqueId()}`, `all/${uniqueId()}`];
    for (const g of groups) await service.group(g).addConnection(id(c));
    for (const g of groups) assert.equal(await service.groupExists(g), true);
    await service.removeConnectionFromAllGroups(id(c));
    for (const g of groups) assert.equal(await service.groupExists(g), false);
    await close(c);
  });

  test('addConnectionsToGroups / removeConnectionsFromGroups with a filter', async () => {
    const tag = uniqueId().replace(/[^a-z0-9]/gi, '');
    const a = await client(5, `${tag}-a`);
    const b = await client(5, `${tag}-b`);
    await service.addConnectionsToGroups([`t/${tag}`], odata`userId eq ${`${tag}-a`}`);
    const got = collect(a, 1);
    const quiet = expectNoMessage(b, 400);
    await service.group(`t/${tag}`).sendToAll('x', { contentType: 'text/plain' });
    await got;
    assert.equal(await quiet, true);
    await service.removeConnectionsFromGroups([`t/${tag}`], odata`userId eq ${`${tag}-a`}`);
    assert.equal(await service.groupExists(`t/${tag}`), false);
    await close(a, b);
  });

  test('closeConnection: 5.0 gets DISCONNECT 0x98 with the reason, the session ends', async () => {
    const clientId = uniqueId('closed');
    const c = await client(5, undefined, { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } });
    const disconnected = serverDisconnect(c);
    const reasonString = new Promise<string | undefined>((resolve) => { c.once('disconnect', (p) => resolve(p.properties?.reasonString)); });
    await service.closeConnection(clientId, { reason: 'maintenance' });
    assert.equal(await disconnected, 0x98);
    assert.equal(await reasonString, 'maintenance');
    // The session is gone, not just its connection (bounded poll: it ends once the socket closed)
    const deadline = Date.now() + 5000;
    while (await service.connectionExists(clientId)) {
      if (Date.now() > deadline) throw new Error('session still exists');
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  test('group(g).closeAllConnections closes the sessions in the group only', async () => {
    const group = `closing/${uniqueId()}`;
    const inGroup = await client(5);
    const outside = await client(5);
    await service.group(group).addConnection(id(inGroup));
    const closed = serverDisconnect(inGroup);
    await service.group(group).closeAllConnections({ reason: 'room closed' });
    assert.equal(await closed, 0x98);
    assert.equal(await pubCode(outside, 'still/open'), 0x87, 'the session outside the group is still connected');
    await close(outside);
  });

  test('closeUserConnections and closeAllConnections with excluded', async () => {
    const user = `cu-${uniqueId()}`;
    const a = await client(4, user);
    const keep = await client(5);
    const closedA = new Promise<void>((r) => { a.once("close", () => r()); });
    await service.closeUserConnections(user, { reason: 'bye' });
    await closedA;
    const b = await client(5);
    const closedB = serverDisconnect(b);
    // (The SDK's closeAllConnections takes no excluded list: the REST call does)
    const r = await rest(broker, 'POST', `/api/hubs/${HUB}/:closeConnections?api-version=2024-12-01&reason=all&excluded=${encodeURIComponent(id(keep))}`);
    assert.equal(r.status, 204);
    assert.equal(await closedB, 0x98);
    assert.equal(await pubCode(keep, 'still/here'), 0x87, 'the excluded connection is still open (its PUBLISH is answered)');
    const closedKeep = serverDisconnect(keep);
    await service.closeAllConnections({ reason: 'everyone' });
    assert.equal(await closedKeep, 0x98);
    await close(keep);
  });

  test(':generateToken makes a token the broker accepts (Default and MQTT client types)', async () => {
    const r = await rest(broker, 'POST', `/api/hubs/${HUB}/:generateToken?api-version=2024-12-01&userId=gen&role=webpubsub.sendToGroup&clientType=MQTT&minutesToExpire=5`);
    assert.equal(r.status, 200);
    const token = (r.json as { token: string }).token;
    const c = await mqtt.connectAsync(`${broker.wsUrl(HUB)}?access_token=${token}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
    assert.equal(await pubCode(c, 'any/topic'), 0);
    await close(c);
    const d = await rest(broker, 'POST', `/api/hubs/${HUB}/:generateToken?api-version=2024-12-01&clientType=Bogus`);
    assert.equal(d.status, 400);
  });
});

describe('OpenAPI', () => {
  test('the document at /openapi.json lists every data-plane route with its parameters; the UI answers at /api-docs/', async () => {
    const base = `http://${broker.host}:${broker.httpPort}`;
    const doc = await (await fetch(`${base}/openapi.json`)).json() as { openapi: string; paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>> };
    assert.match(doc.openapi, /^3\./);
    for (const path of ['/api/hubs/{hub}/:send', '/api/hubs/{hub}/groups/{group}/connections/{connectionId}', '/api/hubs/{hub}/permissions/{permission}/connections/{connectionId}', '/api/hubs/{hub}/:generateToken']) {
      assert.ok(doc.paths[path], `${path} is documented`);
    }
    const send = doc.paths['/api/hubs/{hub}/:send']!['post']!;
    assert.deepEqual(send.parameters!.filter((p) => p.in === 'query').map((p) => p.name).sort(), ['api-version', 'excluded', 'filter', 'messageTtlSeconds']);
    const ui = await fetch(`${base}/api-docs/`);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /swagger/i);
  });
});
