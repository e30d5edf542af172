// Runtime grants with the official server SDK (grantPermission / hasPermission / revokePermission):
// applied to a live connection at once, stored in PostgreSQL and audited with their actor, kept
// across a kill -9 for a persistent session, gone with the session; hub settings over the admin API.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { startBroker, testKeys, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, pubCode, uniqueId } from '../helpers/clients.ts';
import { rest, upgradeStatus } from '../helpers/rest.ts';

const HUB = 'Grants';

let broker: BrokerProcess & { databaseUrl: string | undefined };
let db: pg.Client;
let service: WebPubSubServiceClient;

async function start(databaseUrl?: string): Promise<void> {
  broker = await startBroker(['--allow-anonymous=false', '--default-hub', HUB], {}, databaseUrl ? { databaseUrl } : { keepDatabase: true });
  service = new WebPubSubServiceClient(broker.connectionString, HUB, { allowInsecureConnection: true });
}

before(async () => {
  await start();
  db = new pg.Client({ connectionString: broker.databaseUrl });
  await db.connect();
});
after(async () => {
  await db?.end();
  await broker?.stop();
});

async function tokenClient(roles: string[], opts: IClientOptions = {}): Promise<MqttClient> {
  const t = await service.getClientAccessToken({ clientProtocol: 'mqtt', roles });
  return mqtt.connectAsync(broker.mqttUrl, {
    protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('grant'), username: 'u', password: t.token, ...opts,
  });
}


async function auditCount(event: string, clientId: string, n: number, timeoutMs = 5000): Promise<Array<{ actor: string | null; detail: Record<string, unknown> }>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = (await db.query('SELECT actor, detail FROM audit_events WHERE event = $1 AND client_id = $2 ORDER BY id', [event, clientId])).rows;
    if (rows.length >= n) return rows;
    if (Date.now() > deadline) throw new Error(`expected ${n} ${event} rows for ${clientId}, got ${rows.length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('grant / check / revoke permission', () => {
  test('a grant applies to the live connection at once; revoking takes it away at once; both audited with the key as actor', async () => {
    const c = await tokenClient([]);
    const id = String(c.options.clientId);
    const topic = `alerts/${uniqueId()}`;
    assert.equal(await pubCode(c, topic), 0x87);
    assert.equal(await service.hasPermission(id, 'sendToGroup', { targetName: topic }), false);
    await service.grantPermission(id, 'sendToGroup', { targetName: topic });
    assert.equal(await service.hasPermission(id, 'sendToGroup', { targetName: topic }), true);
    assert.equal(await pubCode(c, topic), 0);
    assert.equal(await pubCode(c, `${topic}/other`), 0x87, 'the grant names one group');
    await service.revokePermission(id, 'sendToGroup', { targetName: topic });
    assert.equal(await service.hasPermission(id, 'sendToGroup', { targetName: topic }), false);
    assert.equal(await pubCode(c, topic), 0x87);
    const granted = await auditCount('permission_granted', id, 1);
    assert.deepEqual(granted[0], { actor: 'key:primary', detail: { permission: 'sendToGroup', target: topic } });
    const revoked = await auditCount('permission_revoked', id, 1);
    assert.deepEqual(revoked[0], { actor: 'key:primary', detail: { permission: 'sendToGroup', target: topic } });
    await close(c);
  });

  test('a grant without targetName covers every group; joinLeaveGroup governs SUBSCRIBE', async () => {
    const c = await tokenClient([]);
    const id = String(c.options.clientId);
    await service.grantPermission(id, 'joinLeaveGroup');
    assert.equal(await service.hasPermission(id, 'joinLeaveGroup'), true);
    assert.equal(await service.hasPermission(id, 'joinLeaveGroup', { targetName: 'any/thing' }), true);
    const granted = await c.subscribeAsync('any/#', { qos: 1 });
    assert.equal(granted[0]!.qos, 1);
    await close(c);
  });

  test('hasPermission also reports the roles of the connection\'s token', async () => {
    const c = await tokenClient(['webpubsub.sendToGroup.news']);
    assert.equal(await service.hasPermission(String(c.options.clientId), 'sendToGroup', { targetName: 'news' }), true);
    assert.equal(await service.hasPermission(String(c.options.clientId), 'sendToGroup', { targetName: 'sport' }), false);
    await close(c);
  });

  test('granting to a connection that does not exist is 404; a bad permission name is 400', async () => {
    await assert.rejects(service.grantPermission('no-such-client', 'sendToGroup'), (e: unknown) => (e as { statusCode?: number }).statusCode === 404);
    const r = await rest(broker, 'PUT', `/api/hubs/${HUB}/permissions/publishAnything/connections/x?api-version=2024-12-01`);
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('x-ms-error-code'), 'InvalidPermission');
    assert.equal((r.json as { code: string }).code, 'InvalidPermission');
  });

  test('REST calls without a token or signed with another key are 401; the secondary key works', async () => {
    const path = `/api/hubs/${HUB}/permissions/sendToGroup/connections/x?api-version=2024-12-01`;
    assert.equal((await rest(broker, 'HEAD', path, { key: null })).status, 401);
    const wrong = await rest(broker, 'PUT', path, { key: 'some-other-key-0123456789' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('x-ms-error-code'), 'Unauthorized');
    assert.equal((await rest(broker, 'HEAD', path, { key: testKeys.secondary })).status, 404);
  });

  test('a grant ends with its session (a non-persistent client disconnects)', async () => {
    const c = await tokenClient([]);
    const id = String(c.options.clientId);
    await service.grantPermission(id, 'sendToGroup', { targetName: 'ephemeral' });
    await c.endAsync();
    const revoked = await auditCount('permission_revoked', id, 1);
    assert.deepEqual(revoked[0], { actor: 'broker', detail: { all: true, why: 'session ended' } });
    const rows = await db.query('SELECT count(*) FROM permissions WHERE subject = $1', [id]);
    assert.equal(Number(rows.rows[0].count), 0);
  });

  test('grants of a persistent session survive kill -9 and a restart', async () => {
    const clientId = uniqueId('durable-grant');
    const opts = { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const c = await tokenClient([], opts);
    await service.grantPermission(clientId, 'sendToGroup', { targetName: 'kept' });
    await c.endAsync();
    const url = broker.databaseUrl!;
    await broker.kill();
    await start(url);
    assert.equal(await service.hasPermission(clientId, 'sendToGroup', { targetName: 'kept' }), true);
    const again = await tokenClient([], opts);
    assert.equal(await pubCode(again, 'kept'), 0);
    assert.equal(await pubCode(again, 'not-kept'), 0x87);
    await close(again);
  });
});

describe('hub settings (admin API)', () => {
  test('a hub\'s session limit refuses one more session (CONNACK 0x97) but not a client taking its own session back', async () => {
    const hub = `Cap${uniqueId().replace(/[^A-Za-z0-9]/g, '')}`;
    assert.equal((await rest(broker, 'PATCH', `/api/admin/hubs/${hub}/settings`, { body: { anonymousConnectPolicy: 'allow', maxSessions: 1 } })).status, 200);
    const url = `ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${hub}`;
    const opts = (clientId: string): IClientOptions => ({ protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId });
    const first = await mqtt.connectAsync(url, opts('cap-1'));
    await assert.rejects(mqtt.connectAsync(url, opts('cap-2')), (e: unknown) => (e as { code?: number }).code === 0x97);
    const again = await mqtt.connectAsync(url, opts('cap-1')); // takes over its own session: no new session
    await close(first, again);
  });


  test('a hub may allow anonymous clients while the deployment denies them; settings are validated and audited', async () => {
    const open = `Open${uniqueId().replace(/[^A-Za-z0-9]/g, '')}`;
    const anon = (hub: string): Promise<MqttClient> => mqtt.connectAsync(`ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${hub}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
    const refused = async (hub: string): Promise<number> => (await upgradeStatus(`ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${hub}`)).status;
    assert.equal(await refused(open), 401);
    const r = await rest(broker, 'PATCH', `/api/admin/hubs/${open}/settings`, { body: { anonymousConnectPolicy: 'allow', maxKeepAliveSec: 30 } });
    assert.equal(r.status, 200);
    assert.deepEqual({ ...(r.json as Record<string, unknown>), stored: undefined }, {
      hub: open.toLowerCase(), anonymousConnectPolicy: 'allow', maxKeepAliveSec: 30, maxSessions: null, stored: undefined,
    });
    await close(await anon(open));
    // keep alive 0 is capped to the hub's 30 s and the 5.0 client is told (Server Keep Alive)
    const capped = mqtt.connect(`ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${open}`, { protocolVersion: 5, reconnectPeriod: 0, keepalive: 0 });
    const p = await new Promise<{ properties?: { serverKeepAlive?: number } }>((resolve, reject) => { capped.once('connect', resolve); capped.once('error', reject); });
    assert.equal(p.properties?.serverKeepAlive, 30);
    await close(capped);
    assert.equal(await refused(`Other${open}`), 401);
    assert.equal((await rest(broker, 'PATCH', `/api/admin/hubs/${open}/settings`, { body: { anonymousConnectPolicy: 'maybe' } })).status, 400);
    assert.equal((await rest(broker, 'PATCH', `/api/admin/hubs/${open}/settings`, { body: { bogus: 1 } })).status, 400);
    assert.equal((await rest(broker, 'GET', `/api/admin/hubs/${open}/settings`, { key: null })).status, 401);
    const got = await rest(broker, 'GET', `/api/admin/hubs/${open.toUpperCase()}/settings`);
    assert.equal((got.json as { anonymousConnectPolicy: string }).anonymousConnectPolicy, 'allow');
    const audit = await db.query("SELECT actor, detail FROM audit_events WHERE event = 'hub_settings_changed' AND hub = $1", [open.toLowerCase()]);
    assert.deepEqual(audit.rows, [{ actor: 'key:primary', detail: { anonymousConnectPolicy: 'allow', maxKeepAliveSec: 30 } }]);
  });
});
