// The admin API over real HTTP against MQTT.js clients: sessions (list, page, filter, detail,
// disconnect, end), subscriptions, retained messages, grants, the audit trail and totals; what each
// call changes is checked from the clients' side, and every change leaves an admin_action row.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startBroker, testKeys, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, uniqueId } from '../helpers/clients.ts';
import { serverDisconnect } from '../helpers/inbox.ts';
import { rest } from '../helpers/rest.ts';
import { auditRows } from '../helpers/audit.ts';
import pg from 'pg';

const HUB = 'Admin';
const hubKey = HUB.toLowerCase();

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

const v5 = (opts: IClientOptions = {}): Promise<MqttClient> => connect(broker, 'tcp', 5, opts);
const id = (c: MqttClient): string => String(c.options.clientId);
const sessionPath = (clientId: string): string => `/api/admin/hubs/${HUB}/sessions/${encodeURIComponent(clientId)}`;
const topicPath = (topic: string): string => `/api/admin/hubs/${HUB}/retained/${encodeURIComponent(topic)}`;

interface Page<T> { value: T[]; nextCursor?: string }
interface AuditRow { id: number; at: string; hub: string; event: string; clientId: string | null; actor: string | null; detail: Record<string, unknown> | null }

/** GET a JSON page; asserts 200. */
async function get<T>(path: string): Promise<T> {
  const r = await rest(broker, 'GET', path);
  assert.equal(r.status, 200, `GET ${path}: ${JSON.stringify(r.json)}`);
  return r.json as T;
}

/** Every page of a listing, following nextCursor. */
async function allPages<T>(path: string): Promise<{ items: T[]; pages: number[] }> {
  const items: T[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get<Page<T>>(cursor === undefined ? path : `${path}${sep}cursor=${encodeURIComponent(cursor)}`);
    items.push(...page.value);
    pages.push(page.value.length);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { items, pages };
}

/** The newest admin_action rows about `clientId` (or, with `topic`, about that retained topic). */
async function adminActions(filter: { clientId?: string; topic?: string }): Promise<AuditRow[]> {
  const q = `/api/admin/audit?event=admin_action&hub=${HUB}${filter.clientId ? `&clientId=${encodeURIComponent(filter.clientId)}` : ''}&limit=1000`;
  const rows = (await get<Page<AuditRow>>(q)).value;
  return filter.topic ? rows.filter((r) => r.detail?.['target'] && (r.detail['target'] as { topic?: string }).topic === filter.topic) : rows;
}

describe('sessions', () => {
  test('listing pages by (hub, clientId): limit 2 over 5 sessions, every one seen once; filters by prefix, connected, persistent and userId', async () => {
    const prefix = `${uniqueId('pg')}-`;
    const clients: MqttClient[] = [];
    for (let i = 0; i < 5; i++) clients.push(await v5({ clientId: `${prefix}${i}` }));
    // One persistent session whose client has gone
    const gone = await v5({ clientId: `${prefix}persistent`, clean: false, properties: { sessionExpiryInterval: 600 } });
    await gone.endAsync();
    const { items, pages } = await allPages<{ hub: string; clientId: string; connected: boolean; persistent: boolean; subscriptions: number }>(
      `/api/admin/sessions?hub=${HUB}&clientIdPrefix=${encodeURIComponent(prefix)}&connected=true&limit=2`);
    assert.deepEqual(items.map((s) => s.clientId), [0, 1, 2, 3, 4].map((i) => `${prefix}${i}`));
    assert.deepEqual(pages, [2, 2, 1]);
    assert.ok(items.every((s) => s.hub === hubKey && s.connected && !s.persistent));

    const offline = (await get<Page<{ clientId: string; connected: boolean; persistent: boolean; expiryIntervalSec: number }>>(
      `/api/admin/sessions?clientIdPrefix=${encodeURIComponent(prefix)}&persistent=true`)).value;
    assert.deepEqual(offline.map((s) => [s.clientId, s.connected, s.persistent, s.expiryIntervalSec]), [[`${prefix}persistent`, false, true, 600]]);

    const t = await service.getClientAccessToken({ clientProtocol: 'mqtt', userId: `${prefix}user` });
    const withUser = await v5({ clientId: `${prefix}u`, username: 'u', password: t.token });
    const byUser = (await get<Page<{ clientId: string; userId: string | null }>>(`/api/admin/sessions?userId=${encodeURIComponent(`${prefix}user`)}`)).value;
    assert.deepEqual(byUser, [{ ...byUser[0], clientId: `${prefix}u`, userId: `${prefix}user` }]);
    assert.equal(byUser.length, 1);
    await close(...clients, withUser);
  });

  test('detail: subscriptions with their options, queue and in-flight counts and bytes, will without payload, connection', async () => {
    const clientId = uniqueId('detail');
    const c = await v5({
      clientId, clean: false, properties: { sessionExpiryInterval: 300 },
      will: { topic: `will/${clientId}`, payload: Buffer.from('gone!'), qos: 1, retain: true, properties: { willDelayInterval: 30 } },
    });
    await c.subscribeAsync(`d/${clientId}/+`, { qos: 2, nl: true, rap: true, rh: 1, properties: { subscriptionIdentifier: 7 } });
    await c.subscribeAsync(`e/${clientId}`, { qos: 0 });
    const d = await get<Record<string, unknown>>(sessionPath(clientId));
    assert.equal(d['clientId'], clientId);
    assert.equal(d['hub'], hubKey);
    assert.equal(d['connected'], true);
    assert.equal(d['persistent'], true);
    assert.equal(d['protocolVersion'], '5.0');
    assert.equal(d['expiryIntervalSec'], 300);
    assert.match(String(d['remoteAddress']), /127\.0\.0\.1/);
    assert.ok(Date.now() - Date.parse(String(d['connectedSince'])) < 60_000);
    assert.deepEqual(d['subscriptions'], [
      { filter: `d/${clientId}/+`, qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 1, subscriptionId: 7 },
      { filter: `e/${clientId}`, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: null },
    ]);
    assert.deepEqual(d['queued'], { count: 0, bytes: 0 });
    assert.deepEqual(d['inflight'], { count: 0, bytes: 0 });
    assert.deepEqual(d['will'], { topic: `will/${clientId}`, qos: 1, retain: true, delaySec: 30, payloadBytes: 5 });
    assert.equal(JSON.stringify(d).includes('gone!'), false);
    assert.equal(JSON.stringify(d).includes(Buffer.from('gone!').toString('base64')), false);
    await close(c);
  });

  test('an offline persistent session counts what is queued for it', async () => {
    const clientId = uniqueId('queued');
    const c = await v5({ clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    await c.subscribeAsync(`q/${clientId}`, { qos: 1 });
    await c.endAsync();
    const p = await v5();
    await p.publishAsync(`q/${clientId}`, 'abcd', { qos: 1 });
    await p.publishAsync(`q/${clientId}`, 'efghij', { qos: 1 });
    const d = await get<Record<string, unknown>>(sessionPath(clientId));
    assert.equal(d['connected'], false);
    assert.equal(d['remoteAddress'], null);
    assert.equal(d['connectedSince'], null);
    assert.deepEqual(d['queued'], { count: 2, bytes: 10 });
    await close(p);
  });

  test(':disconnect sends DISCONNECT 0x98 with the reason; a persistent session stays; audited', async () => {
    const clientId = uniqueId('kick');
    const c = await v5({ clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    const disconnected = serverDisconnect(c);
    const r = await rest(broker, 'POST', `${sessionPath(clientId)}/:disconnect?reason=maintenance`);
    assert.equal(r.status, 204);
    assert.equal(await disconnected, 0x98);
    const d = await get<Record<string, unknown>>(sessionPath(clientId));
    assert.equal(d['connected'], false);
    assert.equal(await service.connectionExists(clientId), true);
    // Not connected any more: nothing to disconnect
    assert.equal((await rest(broker, 'POST', `${sessionPath(clientId)}/:disconnect`)).status, 409);
    // Both calls audited: the disconnect, then the refused one with its answer
    const [row, refused] = await auditRows(db, "event = 'admin_action' AND client_id = $1", [clientId], 2);
    assert.equal(row?.actor, 'key:primary');
    assert.deepEqual(row?.detail, {
      method: 'POST', route: '/admin/hubs/:hub/sessions/:clientId/:disconnect', target: { clientId, reason: 'maintenance' }, result: 'disconnected',
    });
    assert.deepEqual(refused?.detail, {
      method: 'POST', route: '/admin/hubs/:hub/sessions/:clientId/:disconnect', target: { clientId }, status: 409, result: 'failed', error: 'NotConnected',
    });
  });

  test('DELETE ends the session (connectionExists false); audited', async () => {
    const clientId = uniqueId('end');
    const c = await v5({ clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    const disconnected = serverDisconnect(c);
    assert.equal((await rest(broker, 'DELETE', sessionPath(clientId))).status, 204);
    assert.equal(await disconnected, 0x98);
    const deadline = Date.now() + 5000;
    while (await service.connectionExists(clientId)) {
      if (Date.now() > deadline) throw new Error('session still exists');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await rest(broker, 'GET', sessionPath(clientId))).status, 404);
    const [row] = await adminActions({ clientId });
    assert.deepEqual([row?.event, row?.actor, row?.detail?.['method'], row?.detail?.['result']], ['admin_action', 'key:primary', 'DELETE', 'session ended']);
  });

  test('unknown sessions are 404 for every session route', async () => {
    const s = sessionPath('no-such-client');
    for (const [method, path] of [['GET', s], ['DELETE', s], ['POST', `${s}/:disconnect`], ['PUT', `${s}/subscriptions?filter=a`], ['DELETE', `${s}/subscriptions?filter=a`]] as const) {
      const r = await rest(broker, method, path);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal((r.json as { code: string }).code, 'NotFound');
      assert.equal(r.headers.get('x-ms-error-code'), 'NotFound');
    }
  });
});

describe('subscriptions', () => {
  test('PUT adds a subscription (a publish then reaches the client); DELETE removes it; both audited', async () => {
    const c = await v5();
    const p = await v5();
    const topic = `sub/${uniqueId()}`;
    const put = await rest(broker, 'PUT', `${sessionPath(id(c))}/subscriptions?filter=${encodeURIComponent(`${topic}/+`)}&qos=1`);
    assert.equal(put.status, 200);
    assert.deepEqual(put.json, { filter: `${topic}/+`, qos: 1 });
    const got = collect(c, 1);
    await p.publishAsync(`${topic}/x`, 'hello', { qos: 1 });
    const [m] = await got;
    assert.equal(m!.topic, `${topic}/x`);
    assert.equal(m!.payload.toString(), 'hello');
    assert.equal(m!.packet.qos, 1);

    assert.equal((await rest(broker, 'DELETE', `${sessionPath(id(c))}/subscriptions?filter=${encodeURIComponent(`${topic}/+`)}`)).status, 204);
    const quiet = expectNoMessage(c);
    await p.publishAsync(`${topic}/x`, 'again', { qos: 1 });
    assert.equal(await quiet, true);
    const rows = await adminActions({ clientId: id(c) });
    assert.deepEqual(rows.map((r) => [r.actor, r.detail?.['method'], r.detail?.['result']]), [['key:primary', 'DELETE', 'unsubscribed'], ['key:primary', 'PUT', 'subscribed']]);
    assert.deepEqual(rows[1]!.detail?.['target'], { clientId: id(c), filter: `${topic}/+`, qos: 1 });
    await close(c, p);
  });

  test('a bad filter or QoS is 400; a missing filter is 400', async () => {
    const c = await v5();
    for (const q of ['filter=a/%23/b', 'filter=a%2Bb', `filter=x&qos=3`, 'qos=1']) {
      const r = await rest(broker, 'PUT', `${sessionPath(id(c))}/subscriptions?${q}`);
      assert.equal(r.status, 400, q);
      assert.ok(['InvalidTopicFilter', 'InvalidRequest'].includes((r.json as { code: string }).code), JSON.stringify(r.json));
    }
    await close(c);
  });
});

describe('retained messages', () => {
  test('PUT sets one (a new subscriber receives it, with its content type); GET returns it; DELETE removes it; audited', async () => {
    const topic = `ret/${uniqueId()}/a b`;
    const put = await rest(broker, 'PUT', `${topicPath(topic)}?qos=1`, { raw: { bytes: Buffer.from('{"on":true}'), contentType: 'application/json' } });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.deepEqual(put.json, { topic, qos: 1, payloadBytes: 11, contentType: 'application/json' });

    const s = await v5();
    const got = collect(s, 1);
    await s.subscribeAsync(topic, { qos: 1 });
    const [m] = await got;
    assert.equal(m!.payload.toString(), '{"on":true}');
    assert.equal(m!.packet.retain, true);
    assert.equal(m!.packet.properties?.contentType, 'application/json');

    const one = await get<Record<string, unknown>>(topicPath(topic));
    assert.deepEqual(one, { topic, qos: 1, payloadBytes: 11, contentType: 'application/json', expiresAt: null, payload: Buffer.from('{"on":true}').toString('base64') });

    assert.equal((await rest(broker, 'DELETE', topicPath(topic))).status, 204);
    assert.equal((await rest(broker, 'GET', topicPath(topic))).status, 404);
    const s2 = await v5();
    const quiet = expectNoMessage(s2);
    await s2.subscribeAsync(topic, { qos: 1 });
    assert.equal(await quiet, true);
    const rows = await adminActions({ topic });
    assert.deepEqual(rows.map((r) => [r.actor, r.detail?.['method'], r.detail?.['result']]), [
      ['key:primary', 'DELETE', 'retained message removed'], ['key:primary', 'PUT', 'retained message set'],
    ]);
    await close(s, s2);
  });

  test('binary payloads are kept byte for byte', async () => {
    const topic = `ret/${uniqueId()}/bin`;
    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    assert.equal((await rest(broker, 'PUT', topicPath(topic), { raw: { bytes, contentType: 'application/octet-stream' } })).status, 200);
    const one = await get<{ payload: string; qos: number }>(topicPath(topic));
    assert.deepEqual(Buffer.from(one.payload, 'base64'), bytes);
    assert.equal(one.qos, 0);
  });

  test('listing by filter pages (limit 2 over 5), payload only with includePayload=true', async () => {
    const base = `list/${uniqueId()}`;
    for (let i = 0; i < 5; i++) {
      assert.equal((await rest(broker, 'PUT', topicPath(`${base}/${i}`), { raw: { bytes: Buffer.from(`v${i}`), contentType: 'text/plain' } })).status, 200);
    }
    await rest(broker, 'PUT', topicPath(`${base}-other`), { raw: { bytes: Buffer.from('x'), contentType: 'text/plain' } });
    const { items, pages } = await allPages<Record<string, unknown>>(`/api/admin/hubs/${HUB}/retained?filter=${encodeURIComponent(`${base}/#`)}&limit=2`);
    assert.deepEqual(items.map((m) => m['topic']), [0, 1, 2, 3, 4].map((i) => `${base}/${i}`));
    assert.deepEqual(pages, [2, 2, 1]);
    assert.ok(items.every((m) => !('payload' in m) && m['payloadBytes'] === 2 && m['contentType'] === 'text/plain'));
    const withPayload = await get<Page<{ topic: string; payload: string }>>(`/api/admin/hubs/${HUB}/retained?filter=${encodeURIComponent(`${base}/+`)}&includePayload=true`);
    assert.deepEqual(withPayload.value.map((m) => Buffer.from(m.payload, 'base64').toString()), ['v0', 'v1', 'v2', 'v3', 'v4']);
    // The default filter is '#': every topic of the hub
    const everything = (await allPages<{ topic: string }>(`/api/admin/hubs/${HUB}/retained?limit=1000`)).items.map((m) => m.topic);
    assert.ok(everything.includes(`${base}-other`) && everything.includes(`${base}/3`));
  });

  test('bad filters, topics, bodies and cursors are 400; an unknown topic or hub is 404', async () => {
    const r1 = await rest(broker, 'GET', `/api/admin/hubs/${HUB}/retained?filter=${encodeURIComponent('a/#/b')}`);
    assert.equal(r1.status, 400);
    assert.equal((r1.json as { code: string }).code, 'InvalidTopicFilter');
    assert.equal((await rest(broker, 'GET', `/api/admin/hubs/${HUB}/retained?filter=${encodeURIComponent('$share/g/a')}`)).status, 400);
    const r2 = await rest(broker, 'PUT', topicPath('a/+/b'), { raw: { bytes: Buffer.from('x'), contentType: 'text/plain' } });
    assert.equal(r2.status, 400);
    assert.equal((r2.json as { code: string }).code, 'InvalidTopicName');
    assert.equal((await rest(broker, 'PUT', topicPath('empty/body'), { raw: { bytes: Buffer.alloc(0), contentType: 'text/plain' } })).status, 400);
    assert.equal((await rest(broker, 'PUT', `${topicPath('a')}?qos=5`, { raw: { bytes: Buffer.from('x'), contentType: 'text/plain' } })).status, 400);
    assert.equal((await rest(broker, 'GET', `/api/admin/hubs/${HUB}/retained?cursor=not-a-cursor`)).status, 400);
    assert.equal((await rest(broker, 'GET', topicPath(`none/${uniqueId()}`))).status, 404);
    assert.equal((await rest(broker, 'GET', '/api/admin/hubs/NoSuchHub/retained')).status, 404);
  });
});

describe('permissions, audit, stats', () => {
  test('a hub\'s grants are listed', async () => {
    const c = await v5();
    await service.grantPermission(id(c), 'sendToGroup', { targetName: 'news' });
    const grants = (await get<Page<Record<string, unknown>>>(`/api/admin/hubs/${HUB}/permissions`)).value.filter((g) => g['subject'] === id(c));
    assert.equal(grants.length, 1);
    assert.deepEqual({ ...grants[0], grantedAt: undefined }, {
      subjectKind: 'connection', subject: id(c), permission: 'sendToGroup', target: 'news', grantedBy: 'key:primary', grantedAt: undefined,
    });
    assert.equal((await rest(broker, 'GET', '/api/admin/hubs/NoSuchHub/permissions')).status, 404);
    await close(c);
  });

  test('the audit trail is read newest first, filtered by event, client, actor and time, and paged by cursor', async () => {
    const c = await v5();
    const topic = `audit/${uniqueId()}`;
    for (let i = 0; i < 3; i++) {
      assert.equal((await rest(broker, 'PUT', `${sessionPath(id(c))}/subscriptions?filter=${encodeURIComponent(`${topic}/${i}`)}`)).status, 200);
    }
    const { items, pages } = await allPages<AuditRow>(`/api/admin/audit?event=admin_action&clientId=${encodeURIComponent(id(c))}&userId=key:primary&limit=2`);
    assert.deepEqual(items.map((r) => (r.detail?.['target'] as { filter: string }).filter), [2, 1, 0].map((i) => `${topic}/${i}`));
    assert.deepEqual(pages, [2, 1]);
    assert.ok(items[0]!.id > items[1]!.id && items[1]!.id > items[2]!.id);
    assert.ok(items.every((r) => r.hub === hubKey && r.actor === 'key:primary'));
    // The client's own connect is there too, under its event
    const connects = (await get<Page<AuditRow>>(`/api/admin/audit?event=connect&clientId=${encodeURIComponent(id(c))}`)).value;
    assert.equal(connects.length, 1);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.deepEqual((await get<Page<AuditRow>>(`/api/admin/audit?clientId=${encodeURIComponent(id(c))}&from=${future}`)).value, []);
    const past = new Date(Date.now() - 3_600_000).toISOString();
    assert.equal((await get<Page<AuditRow>>(`/api/admin/audit?clientId=${encodeURIComponent(id(c))}&to=${past}`)).value.length, 0);
    assert.equal((await get<Page<AuditRow>>(`/api/admin/audit?clientId=${encodeURIComponent(id(c))}&from=${past}&to=${future}`)).value.length, 4);
    for (const bad of ['from=yesterday', 'limit=0', 'limit=1001', 'cursor=abc']) {
      assert.equal((await rest(broker, 'GET', `/api/admin/audit?${bad}`)).status, 400, bad);
    }
    await close(c);
  });

  test('stats count connections, sessions, subscriptions, queues and the store', async () => {
    type Stats = {
      connections: number; sessions: { total: number; connected: number; persistent: number }; subscriptions: number;
      queued: { count: number; bytes: number }; inflight: number;
      store: {
        kind: string; healthy: boolean; backlogUnits: number; backlogBytes: number;
        commits: { commits: number; rows: number; recent: { commits: number; latencyMs: { p50: number; p99: number; max: number }; batchRows: { mean: number; max: number } } };
      };
      messages: { received: number[]; receivedBytes: number[] };
    };
    const before = await get<Stats>('/api/admin/stats');
    const c = await v5({ clean: false, properties: { sessionExpiryInterval: 60 } });
    const topic = `stats/${uniqueId()}`;
    await c.subscribeAsync(topic, { qos: 1 });
    // QoS 0 first: the PUBACK of the QoS 1 message after it proves the broker has read both
    // (a QoS 0 publish resolves once written to the socket, before the broker may have read it)
    await c.publishAsync(topic, 'de', { qos: 0 });
    await c.publishAsync(topic, 'abc', { qos: 1 });
    const s = await get<Stats>('/api/admin/stats');
    // Messages in per QoS, counted by the engine: exactly what this client sent
    assert.deepEqual(s.messages.received.map((n, q) => n - before.messages.received[q]!), [1, 1, 0]);
    assert.deepEqual(s.messages.receivedBytes.map((n, q) => n - before.messages.receivedBytes[q]!), [2, 3, 0]);
    assert.ok(s.connections >= 1);
    assert.ok(s.sessions.total >= s.sessions.connected && s.sessions.connected >= 1 && s.sessions.persistent >= 1);
    assert.ok(s.subscriptions >= 1);
    assert.equal(typeof s.queued.bytes, 'number');
    assert.equal(typeof s.inflight, 'number');
    assert.deepEqual([s.store.kind, s.store.healthy, typeof s.store.backlogUnits, typeof s.store.backlogBytes], ['postgres', true, 'number', 'number']);
    // The persistent session, its subscription and the QoS 1 message were committed: group commits counted
    const k = s.store.commits;
    assert.ok(k.commits > before.store.commits.commits && k.rows > before.store.commits.rows, JSON.stringify({ before: before.store.commits, after: k }));
    assert.ok(k.recent.commits >= 1 && k.recent.commits <= 1024);
    assert.ok(k.recent.latencyMs.p50 > 0 && k.recent.latencyMs.p50 <= k.recent.latencyMs.p99 && k.recent.latencyMs.p99 <= k.recent.latencyMs.max);
    assert.ok(k.recent.batchRows.mean >= 1 && k.recent.batchRows.max >= k.recent.batchRows.mean);
    await close(c);
  });
});

describe('request checks', () => {
  test('a failed change is audited too: what was asked, by whom, and the answer', async () => {
    const ghost = `ghost-${uniqueId()}`;
    assert.equal((await rest(broker, 'POST', `${sessionPath(ghost)}/:disconnect?reason=x`)).status, 404);
    assert.equal((await rest(broker, 'PUT', `${sessionPath(ghost)}/subscriptions?filter=${encodeURIComponent('a/#/b')}`)).status, 404);
    assert.equal((await rest(broker, 'PUT', `${topicPath('bad/#')}`, { raw: { bytes: Buffer.from('x'), contentType: 'text/plain' } })).status, 400);
    const rows = await auditRows(db, "event = 'admin_action' AND detail->>'result' = 'failed' AND (client_id = $1 OR detail->'target'->>'topic' = 'bad/#')", [ghost], 3);
    assert.deepEqual(rows.map((r) => [r.actor, r.reason_code, r.detail?.['method'], r.detail?.['status'], r.detail?.['error']]), [
      ['key:primary', 404, 'POST', 404, 'NotFound'], ['key:primary', 404, 'PUT', 404, 'NotFound'], ['key:primary', 400, 'PUT', 400, 'InvalidTopicName'],
    ]);
    assert.equal(rows[0]!.detail?.['route'], '/admin/hubs/:hub/sessions/:clientId/:disconnect');
    // A data-plane call that fails is a rest_call row with its status
    assert.equal((await rest(broker, 'PUT', `/api/hubs/${HUB}/groups/${encodeURIComponent('a+b')}/connections/${ghost}`)).status, 400);
    const [dp] = await auditRows(db, "event = 'rest_call' AND client_id = $1", [ghost], 1);
    assert.deepEqual([dp!.reason_code, dp!.detail?.['result'], dp!.detail?.['error']], [400, 'failed', 'InvalidGroupName']);
  });

  test('401 without a token or with a token signed by another key; the secondary key works', async () => {
    for (const path of ['/api/admin/sessions', '/api/admin/stats', '/api/admin/audit', `/api/admin/hubs/${HUB}/retained`]) {
      const none = await rest(broker, 'GET', path, { key: null });
      assert.equal(none.status, 401, path);
      assert.equal(none.headers.get('x-ms-error-code'), 'Unauthorized');
      assert.equal((await rest(broker, 'GET', path, { key: 'some-other-key-0123456789' })).status, 401, path);
    }
    assert.equal((await rest(broker, 'PUT', topicPath('x'), { key: null, raw: { bytes: Buffer.from('x'), contentType: 'text/plain' } })).status, 401);
    assert.equal((await rest(broker, 'GET', '/api/admin/stats', { key: testKeys.secondary })).status, 200);
  });

  test('400 for bad limits, booleans, cursors and hub names', async () => {
    for (const q of ['limit=0', 'limit=1001', 'limit=ten', 'connected=maybe', 'persistent=2', 'cursor=bm90LWpzb24', 'hub=9bad']) {
      const r = await rest(broker, 'GET', `/api/admin/sessions?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(typeof (r.json as { code?: unknown }).code, 'string');
    }
    assert.equal((await rest(broker, 'GET', '/api/admin/hubs/9bad/sessions/x')).status, 400);
  });
});

// A 3.1.1 client is closed by :disconnect (no DISCONNECT packet in 3.1.1)
test('a 3.1.1 client is closed by :disconnect', async () => {
  const c = await mqtt.connectAsync(broker.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, clientId: uniqueId('v4') });
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
  assert.equal((await rest(broker, 'POST', `${sessionPath(id(c))}/:disconnect`)).status, 204);
  await closed;
  await close(c);
});
