// Web PubSub client access with the official server SDK: tokens from getClientAccessToken (default
// and clientProtocol "mqtt") used by MQTT.js over WebSocket and TCP in both protocol versions, every
// refusal (HTTP 401 at the upgrade, CONNACK on TCP) and its audit row, roles as permissions, and
// groups joined at connect. The broker denies anonymous clients, as it does off loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { startBroker, testKeys, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, pubCode, refusal, uniqueId, type Version } from '../helpers/clients.ts';
import { auditRows } from '../helpers/audit.ts';
import { subscribeRaw } from '../helpers/inbox.ts';
import { upgradeStatus } from '../helpers/rest.ts';

const HUB = 'Chat';

let broker: BrokerProcess & { databaseUrl: string | undefined };
let db: pg.Client;
let service: WebPubSubServiceClient;

before(async () => {
  broker = await startBroker(['--allow-anonymous=false', '--default-hub', HUB]);
  db = new pg.Client({ connectionString: broker.databaseUrl });
  await db.connect();
  service = new WebPubSubServiceClient(broker.connectionString, HUB, { allowInsecureConnection: true });
});
after(async () => {
  await db?.end();
  await broker?.stop();
});



/** A token the way the SDK makes one. */
async function token(opts: Parameters<WebPubSubServiceClient['getClientAccessToken']>[0] = {}, hub = HUB): Promise<{ token: string; url: string }> {
  const client = hub === HUB ? service : new WebPubSubServiceClient(broker.connectionString, hub, { allowInsecureConnection: true });
  const t = await client.getClientAccessToken({ clientProtocol: 'mqtt', ...opts });
  return { token: t.token, url: t.url };
}

const base = (version: Version, opts: IClientOptions = {}): IClientOptions => ({
  protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('wps'), ...opts,
});

/** MQTT.js over WebSocket to the URL the SDK returned (token in the query). */
function overWs(url: string, version: Version, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, base(version, opts));
}

/** MQTT.js over TCP with the token as the password (the user name is free). */
function overTcp(jwt: string, version: Version, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(broker.mqttUrl, base(version, { username: 'any-name', password: jwt, ...opts }));
}

/** A client that may publish and subscribe anywhere (for sending sentinels and receiving). */
async function superClient(version: Version = 5): Promise<MqttClient> {
  const t = await token({ roles: ['webpubsub.sendToGroup', 'webpubsub.joinLeaveGroup'] });
  return overWs(t.url, version);
}

/** Hand-made HS256 JWT (for tokens the SDK would never make). */
function jwt(header: object, payload: object, key: string): string {
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc(header)}.${enc(payload)}`;
  return `${body}.${createHmac('sha256', Buffer.from(key, 'utf8')).update(body).digest('base64url')}`;
}
const nowSec = (): number => Math.floor(Date.now() / 1000);
const mqttAud = (hub = HUB): string => `http://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${hub}`;




describe('tokens from @azure/web-pubsub', () => {
  for (const version of [4, 5] as const) {
    test(`v${version === 4 ? '3.1.1' : '5'}: an mqtt token over WebSocket and the same kind over TCP connect, carrying the user id`, async () => {
      const t = await token({ userId: 'alice', roles: ['webpubsub.sendToGroup'] });
      assert.match(t.url, new RegExp(`^ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${HUB}\\?access_token=`));
      const ws = await overWs(t.url, version);
      const tcp = await overTcp(t.token, version);
      const connects = await auditRows(db, "event = 'connect' AND client_id = ANY($1)", [[ws.options.clientId, tcp.options.clientId]], 2);
      for (const row of connects) {
        assert.equal(row.actor, 'alice');
        assert.equal(row.detail?.['method'], 'jwt');
      }
      await close(ws, tcp);
    });

    test(`v${version === 4 ? '3.1.1' : '5'}: a default (native client) token is accepted on the MQTT endpoints too`, async () => {
      const t = await service.getClientAccessToken({ userId: 'bob' });
      assert.match(t.url, /\/client\/hubs\/Chat\?access_token=/);
      const ws = await overWs(`${broker.wsUrl(HUB)}?access_token=${t.token}`, version);
      const tcp = await overTcp(t.token, version);
      await close(ws, tcp);
    });
  }

  test('the token may come in an Authorization: Bearer header at the upgrade', async () => {
    const t = await token();
    const c = await mqtt.connectAsync(broker.wsUrl(HUB), { ...base(5), wsOptions: { headers: { Authorization: `Bearer ${t.token}` } } });
    await close(c);
  });

  test('hub names in the token audience are compared case-insensitively', async () => {
    const t = await token({}, 'chat');
    await close(await overWs(`${broker.wsUrl('CHAT')}?access_token=${t.token}`, 5));
  });
});

describe('refusals', () => {
  const cases: Array<{ name: string; make: () => Promise<string>; v5: number; v4: number }> = [
    { name: 'expired', make: async () => jwt({ alg: 'HS256', typ: 'JWT' }, { aud: mqttAud(), exp: nowSec() - 3600 }, testKeys.primary), v5: 0x87, v4: 5 },
    { name: 'signed with another key', make: async () => jwt({ alg: 'HS256', typ: 'JWT' }, { aud: mqttAud(), exp: nowSec() + 600 }, 'not-the-access-key-at-all'), v5: 0x86, v4: 4 },
    { name: 'for another hub', make: async () => (await token({}, 'Other')).token, v5: 0x87, v4: 5 },
    { name: 'alg none', make: async () => `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ aud: mqttAud(), exp: nowSec() + 600 })).toString('base64url')}.`, v5: 0x86, v4: 4 },
    { name: 'HS512 (not HS256)', make: async () => {
      const h = Buffer.from('{"alg":"HS512","typ":"JWT"}').toString('base64url');
      const p = Buffer.from(JSON.stringify({ aud: mqttAud(), exp: nowSec() + 600 })).toString('base64url');
      return `${h}.${p}.${createHmac('sha512', testKeys.primary).update(`${h}.${p}`).digest('base64url')}`;
    }, v5: 0x86, v4: 4 },
    { name: 'garbage', make: async () => 'not.a-token.at-all', v5: 0x86, v4: 4 },
  ];
  for (const c of cases) {
    test(`${c.name}: HTTP 401 at the WebSocket upgrade, CONNACK ${c.v5.toString(16)} (5.0) / ${c.v4} (3.1.1) on TCP, audited without the token`, async () => {
      const bad = await c.make();
      const ws = await upgradeStatus(`${broker.wsUrl(HUB)}?access_token=${encodeURIComponent(bad)}`);
      assert.equal(ws.status, 401);
      assert.match(ws.body, /^access token refused: /);
      assert.equal((await upgradeStatus(broker.wsUrl(HUB), { authorization: `Bearer ${bad}` })).status, 401);
      const id5 = uniqueId('refused5');
      const id4 = uniqueId('refused4');
      assert.equal((await refusal(overTcp(bad, 5, { clientId: id5 }))).code, c.v5);
      assert.equal((await refusal(overTcp(bad, 4, { clientId: id4 }))).code, c.v4);
      const rows = await auditRows(db, "event = 'connect_refused' AND client_id = ANY($1)", [[id5, id4]], 2);
      for (const row of rows) {
        assert.match(String(row.detail?.['reason']), /^access token refused: /);
        assert.ok(!JSON.stringify(row).includes(bad.split('.')[1] || bad), 'the audit row holds no part of the token');
      }
    });
  }

  test('no token: 401 at the upgrade (audited as upgrade_refused) and CONNACK 0x87 / 5 on TCP', async () => {
    const before = Number((await db.query("SELECT count(*) FROM audit_events WHERE event = 'upgrade_refused'")).rows[0].count);
    assert.deepEqual(await upgradeStatus(broker.wsUrl(HUB)), { status: 401, body: 'anonymous access is disabled for this hub: an access token is needed' });
    assert.equal((await refusal(mqtt.connectAsync(broker.mqttUrl, base(5)))).code, 0x87);
    assert.equal((await refusal(mqtt.connectAsync(broker.mqttUrl, base(4)))).code, 5);
    const rows = await auditRows(db, "event = 'upgrade_refused'", [], before + 1);
    assert.equal(rows.at(-1)!.detail?.['status'], 401);
    assert.match(String(rows.at(-1)!.detail?.['reason']), /anonymous access is disabled/);
  });
});

describe('roles', () => {
  test('5.0: PUBLISH needs sendToGroup on the topic (PUBACK 0x87 and not routed otherwise), SUBSCRIBE needs joinLeaveGroup (SUBACK 0x87)', async () => {
    const topic = `room/${uniqueId()}`;
    const watcher = await superClient();
    await watcher.subscribeAsync(topic, { qos: 1 });
    const t = await token({ roles: [`webpubsub.sendToGroup.${topic}/allowed`, 'webpubsub.joinLeaveGroup.lobby'] });
    const c = await overWs(t.url, 5);
    assert.equal(await pubCode(c, topic, 'forbidden'), 0x87);
    assert.equal(await pubCode(c, `${topic}/allowed`, 'ok'), 0);
    // Not routed: the next message the watcher sees on the topic is the sentinel
    const next = collect(watcher, 1);
    await watcher.publishAsync(topic, 'sentinel', { qos: 1 });
    assert.equal((await next)[0]!.payload.toString(), 'sentinel');
    const suback = await subscribeRaw(c, [{ topic: 'lobby', qos: 1 }, { topic: 'elsewhere', qos: 1 }]);
    assert.deepEqual(suback.granted, [1, 0x87]);
    const rows = await auditRows(db, "event = 'access_denied' AND client_id = $1", [c.options.clientId]);
    assert.equal(rows[0]!.reason_code, 0x87);
    assert.deepEqual({ action: rows[0]!.detail?.['action'], name: rows[0]!.detail?.['name'], count: rows[0]!.detail?.['count'] }, { action: 'publish', name: topic, count: 1 });
    await close(c, watcher);
  });

  test('3.1.1: a denied PUBLISH is acknowledged and dropped, a denied SUBSCRIBE gets 0x80', async () => {
    const topic = `room/${uniqueId()}`;
    const watcher = await superClient();
    await watcher.subscribeAsync(topic, { qos: 1 });
    const t = await token({ roles: [] });
    const c = await overTcp(t.token, 4);
    await c.publishAsync(topic, 'forbidden', { qos: 1 }); // resolves on PUBACK
    const next = collect(watcher, 1);
    await watcher.publishAsync(topic, 'sentinel', { qos: 1 });
    assert.equal((await next)[0]!.payload.toString(), 'sentinel');
    const suback = await subscribeRaw(c, [{ topic, qos: 1 }]);
    assert.deepEqual(suback.granted, [0x80]);
    await close(c, watcher);
  });

  test('a wildcard filter needs a role that covers the filter itself', async () => {
    const t = await token({ roles: ['webpubsub.joinLeaveGroup.sensors/+', 'webpubsub.joinLeaveGroups.metrics/**'] });
    const c = await overWs(t.url, 5);
    const suback = await subscribeRaw(c, [
      { topic: 'sensors/+', qos: 1 }, // the role names this filter
      { topic: 'sensors/#', qos: 1 }, // wider than any role
      { topic: 'sensors/a', qos: 1 }, // a role for "sensors/+" is not one for "sensors/a"
      { topic: 'metrics/cpu/#', qos: 1 }, // pattern ** covers it
      { topic: '$share/g/sensors/+', qos: 1 }, // a shared subscription joins the group of its filter
    ]);
    assert.deepEqual(suback.granted, [1, 0x87, 0x87, 1, 1]);
    await close(c);
  });

  test('pattern roles: ? * ** and escapes, dots as the hierarchy separator', async () => {
    const t = await token({ roles: ['webpubsub.sendToGroups.chat-*', 'webpubsub.sendToGroups.clientA.**', 'webpubsub.sendToGroups.rooms.?1', 'webpubsub.sendToGroups.lit\\*star'] });
    const c = await overWs(t.url, 5);
    const codes: Record<string, number> = {};
    for (const topic of ['chat-1', 'chat.1', 'clientA.alpha.room1', 'rooms.a1', 'rooms.1', 'lit*star', 'litXstar']) {
      codes[topic] = await pubCode(c, topic, 'x');
    }
    assert.deepEqual(codes, { 'chat-1': 0, 'chat.1': 0x87, 'clientA.alpha.room1': 0, 'rooms.a1': 0, 'rooms.1': 0x87, 'lit*star': 0, litXstar: 0x87 });
    await close(c);
  });

  test('groups in the token are joined at connect (QoS 1), for a new session only', async () => {
    const group = `news/${uniqueId()}`;
    const clientId = uniqueId('grp');
    const t = await token({ groups: [group] });
    const c = await overTcp(t.token, 5, { clientId });
    const got = collect(c, 1);
    const sender = await superClient();
    await sender.publishAsync(group, 'hello', { qos: 1 });
    const [m] = await got;
    assert.deepEqual([m!.topic, m!.payload.toString(), m!.packet.qos], [group, 'hello', 1]);
    await close(c, sender);
  });

  test('denials are audited at most once per interval per connection, with their count', async () => {
    const t = await token({ roles: ['webpubsub.joinLeaveGroup.after'] });
    const c = await overWs(t.url, 5);
    for (let i = 0; i < 20; i++) assert.equal(await pubCode(c, 'forbidden', 'x'), 0x87);
    // Audit rows are committed in the order of their events: once this later subscribe row is there, every denial row is
    await c.subscribeAsync('after', { qos: 1 });
    await auditRows(db, "event = 'subscribe' AND client_id = $1", [c.options.clientId]);
    const rows = await auditRows(db, "event = 'access_denied' AND client_id = $1", [c.options.clientId]);
    assert.equal(rows.length, 1, 'the 19 denials after the first fall within the interval');
    assert.equal(rows[0]!.detail?.['count'], 1);
    await close(c);
  });
});
