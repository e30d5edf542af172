// Limits of a public broker that concern a client's session: hubs (created only by an accepted
// CONNECT, and capped), sessions in total, subscriptions per session, retained messages and bytes
// per hub, unacknowledged inbound QoS 1/2 of a 3.1.1 client. Each refusal gives its reason code,
// a log line and (where it concerns a client) an audit row; other clients are unaffected.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId, type Version } from '../helpers/clients.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const QUOTA_EXCEEDED = 0x97;

/** Wait (bounded) for an audit row of `event` for `clientId`; resolves with its detail. */
async function auditRow(broker: BrokerProcess & { databaseUrl: string | undefined }, event: string, clientId: string): Promise<Record<string, unknown>> {
  const c = new pg.Client({ connectionString: broker.databaseUrl });
  await c.connect();
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await c.query('SELECT detail FROM audit_events WHERE event = $1 AND client_id = $2', [event, clientId]);
      if (r.rows.length > 0) return r.rows[0].detail as Record<string, unknown>;
      if (Date.now() > deadline) throw new Error(`no ${event} audit row for ${clientId}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await c.end();
  }
}

/** Resolve true once the broker has logged `msg` (after line `from`); false after 5 s. */
async function logged(broker: BrokerProcess, msg: string | RegExp, from = 0): Promise<boolean> {
  const deadline = Date.now() + 5000;
  const seen = (): boolean => broker.logs.slice(from).some((l) => (typeof msg === 'string' ? l['msg'] === msg : msg.test(String(l['msg']))));
  while (!seen()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** A WebSocket MQTT.js client to `hub`; resolves with the CONNACK code (0 when accepted). */
async function connackOnHub(broker: BrokerProcess, hub: string, version: Version, opts: mqtt.IClientOptions = {}): Promise<{ code: number; client: MqttClient }> {
  const url = `ws://${broker.host}:${broker.httpPort}/clients/mqtt/hubs/${hub}`;
  const client = mqtt.connect(url, { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId(), ...opts });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve({ code: 0, client }));
    client.once('error', (e: Error & { code?: number }) => {
      if (typeof e.code === 'number') resolve({ code: e.code, client });
      else reject(e);
    });
  });
}

describe('hubs, subscriptions per session, 3.1.1 in-flight', () => {
  let broker: BrokerProcess & { databaseUrl: string | undefined };
  let bystander: MqttClient;
  const bystanderTopic = `ok/${uniqueId()}`;
  before(async () => {
    broker = await startBroker(['--max-hubs', '2', '--max-subscriptions-per-session', '3', '--max-unacked-publishes', '4']);
    bystander = await connect(broker, 'tcp', 5); // the default hub: hub 1 of 2
    await bystander.subscribeAsync(bystanderTopic, { qos: 1 });
  });
  after(async () => {
    await close(bystander);
    await broker?.stop();
  });
  async function bystanderServed(): Promise<void> {
    const got = collect(bystander, 1, 5000);
    const other = await connect(broker, 'tcp', 4);
    await other.publishAsync(bystanderTopic, 'still here', { qos: 1 });
    assert.equal((await got)[0]!.payload.toString(), 'still here');
    await close(other);
  }

  test('refused CONNECTs leave no hub behind; a CONNECT that would create one hub too many gets 0x97 / 3', async () => {
    // Refused for an unsupported authentication method, on three different new hubs
    for (const hub of ['ghost1', 'ghost2', 'ghost3']) {
      const r = await connackOnHub(broker, hub, 5, { properties: { authenticationMethod: 'nope' } });
      assert.equal(r.code, 0x8c);
      r.client.end(true);
    }
    // Had they created hubs, this second hub would be over the cap
    const second = await connackOnHub(broker, 'Second', 5);
    assert.equal(second.code, 0);
    const from = broker.logs.length;
    const clientId = uniqueId('third');
    const third = await connackOnHub(broker, 'Third', 5, { clientId });
    assert.equal(third.code, QUOTA_EXCEEDED);
    third.client.end(true);
    const v3 = await connackOnHub(broker, 'Third', 4);
    assert.equal(v3.code, 3); // 3.1.1: Server unavailable
    v3.client.end(true);
    assert.ok(await logged(broker, 'connection refused', from));
    const detail = await auditRow(broker, 'connect_refused', clientId);
    assert.match(String(detail['reason']), /hub limit/);
    // the existing hub still takes new clients
    const again = await connackOnHub(broker, 'second', 5);
    assert.equal(again.code, 0);
    await close(second.client, again.client);
    await bystanderServed();
  });

  test('a hub whose last session has ended is forgotten: its slot takes another hub', async () => {
    // 'second' held clean sessions only, all closed by the test above; the close reaches the broker
    // asynchronously, so a refusal (0x97) is retried a bounded number of times
    let code = -1;
    for (let attempt = 0; attempt < 50 && code !== 0; attempt++) {
      const r = await connackOnHub(broker, `fourth`, 5);
      code = r.code;
      r.client.end(true);
      if (code !== 0) assert.equal(code, QUOTA_EXCEEDED);
    }
    assert.equal(code, 0, 'the hub slot of an empty hub was never freed');
  });

  for (const version of [5, 4] as const) {
    test(`${version === 5 ? '5.0' : '3.1.1'}: subscriptions beyond the per-session cap fail with ${version === 5 ? '0x97' : '0x80'}`, async () => {
      const from = broker.logs.length;
      const c = await RawPeer.connected(broker, 'tcp', version, { clientId: uniqueId('s'), protocolVersion: version });
      const props = version === 5 ? { properties: {} } : {};
      const subscribe = async (messageId: number, topics: string[]): Promise<number[]> => {
        c.sendPacket({ cmd: 'subscribe', messageId, ...props, subscriptions: topics.map((topic) => ({ topic, qos: 1 as const })) });
        await c.log.until(() => c.log.of('suback').some((p) => p.messageId === messageId), `suback ${messageId}`);
        return c.log.of('suback').find((p) => p.messageId === messageId)!.granted as number[];
      };
      assert.deepEqual(await subscribe(1, ['q/a', 'q/b']), [1, 1]);
      // q/a again replaces (no new slot), q/c takes the third, q/d is one too many, and so is q/e
      assert.deepEqual(await subscribe(2, ['q/a', 'q/c', 'q/d', 'q/e']), [1, 1, ...Array(2).fill(version === 5 ? QUOTA_EXCEEDED : 0x80)]);
      assert.ok(await logged(broker, 'subscription refused: session subscription limit reached', from));
      // after an unsubscribe the slot is free again
      c.sendPacket({ cmd: 'unsubscribe', messageId: 3, ...props, unsubscriptions: ['q/b'] });
      await c.log.first('unsuback');
      assert.deepEqual(await subscribe(4, ['q/d']), [1]);
      assert.equal(c.log.closed, false);
      c.destroy();
    });
  }

  test('3.1.1: one unacknowledged QoS 2 PUBLISH over the cap closes the connection (a resend does not count)', async () => {
    const from = broker.logs.length;
    const clientId = uniqueId('v3');
    const c = await RawPeer.connected(broker, 'tcp', 4, { clientId, protocolVersion: 4 });
    for (let id = 1; id <= 4; id++) c.sendPacket({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false });
    await c.log.count('pubrec', 4);
    c.sendPacket({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: 2, retain: false, dup: true });
    await c.log.count('pubrec', 5);
    assert.equal(c.log.closed, false);
    c.sendPacket({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: 5, retain: false, dup: false });
    const packets = await c.log.whenClosed(5000);
    assert.equal(packets.filter((p) => p.cmd === 'pubrec').length, 5);
    assert.ok(await logged(broker, /unacknowledged publish limit/, from));
    await auditRow(broker, 'inflight_limit_exceeded', clientId);
    await bystanderServed();
  });
});

describe('sessions in total', () => {
  let broker: BrokerProcess & { databaseUrl: string | undefined };
  before(async () => { broker = await startBroker(['--max-sessions', '3']); });
  after(async () => { await broker?.stop(); });

  test('a CONNECT that would create one session too many gets 0x97; resuming an existing one still works', async () => {
    const a = await connect(broker, 'tcp', 5, { clientId: uniqueId('a'), clean: false, properties: { sessionExpiryInterval: 300 } });
    const b = await connect(broker, 'tcp', 5);
    const c = await connect(broker, 'tcp', 4);
    const clientId = uniqueId('d');
    await assert.rejects(connect(broker, 'tcp', 5, { clientId }), (e: Error & { code?: number }) => e.code === QUOTA_EXCEEDED);
    await assert.rejects(connect(broker, 'tcp', 4), (e: Error & { code?: number }) => e.code === 3);
    const detail = await auditRow(broker, 'connect_refused', clientId);
    assert.match(String(detail['reason']), /session limit/);
    // a's session stays when it leaves (expiry 300 s), and a may come back to it
    const aId = a.options.clientId!;
    await close(a);
    const back = await connect(broker, 'tcp', 5, { clientId: aId, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(back.connected, true);
    // b's session ends with its connection: its slot is free again
    await close(b);
    const e = await connect(broker, 'tcp', 5);
    await close(back, c, e);
  });
});

describe('retained messages and bytes per hub', () => {
  let broker: BrokerProcess & { databaseUrl: string | undefined };
  before(async () => { broker = await startBroker(['--max-retained-messages', '3', '--max-retained-bytes', '100']); });
  after(async () => { await broker?.stop(); });

  test('5.0: the retained PUBLISH that would exceed gets 0x97; replacing and deleting are allowed', async () => {
    const clientId = uniqueId('r');
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId, protocolVersion: 5 });
    let id = 0;
    const pub = async (topic: string, bytes: number, qos: 1 | 2 = 1): Promise<number> => {
      const messageId = ++id;
      c.sendPacket({ cmd: 'publish', topic, payload: Buffer.alloc(bytes, 0x61), qos, messageId, retain: true, dup: false, properties: {} });
      const cmd = qos === 1 ? 'puback' : 'pubrec';
      await c.log.until(() => c.log.of(cmd).some((p) => p.messageId === messageId), `${cmd} ${messageId}`);
      const ack = c.log.of(cmd).find((p) => p.messageId === messageId)!;
      if (qos === 2 && (ack.reasonCode ?? 0) < 0x80) {
        c.sendPacket({ cmd: 'pubrel', messageId, properties: {} } as never);
        await c.log.until(() => c.log.of('pubcomp').some((p) => p.messageId === messageId), `pubcomp ${messageId}`);
      }
      return ack.reasonCode ?? 0;
    };
    assert.equal(await pub('r/1', 10), 0x10);
    assert.equal(await pub('r/2', 10), 0x10);
    assert.equal(await pub('r/3', 10), 0x10);
    const from = broker.logs.length;
    assert.equal(await pub('r/4', 10), QUOTA_EXCEEDED, 'a fourth retained message');
    assert.equal(await pub('r/4', 10, 2), QUOTA_EXCEEDED, 'a fourth retained message at QoS 2');
    assert.ok(await logged(broker, 'retained publish refused: hub retained limit reached', from));
    await auditRow(broker, 'retained_quota_exceeded', clientId);
    assert.equal(await pub('r/1', 20), 0x10, 'replacing one is allowed');
    assert.equal(await pub('r/2', 0), 0x10, 'deleting one is allowed');
    assert.equal(await pub('r/4', 10), 0x10, 'the freed slot is usable');
    // 20 + 10 + 10 bytes stored: 61 more would exceed 100
    assert.equal(await pub('r/2', 61), QUOTA_EXCEEDED, 'over the byte cap');
    assert.equal(await pub('r/3', 70), 0x10, 'a replacement counts its difference only (20 + 70 + 10)');
    assert.equal(c.log.closed, false);
    c.destroy();
    // A subscriber sees exactly what was stored
    const s = await connect(broker, 'tcp', 5);
    const got = collect(s, 3, 5000);
    await s.subscribeAsync('r/#', { qos: 0 });
    assert.deepEqual((await got).map((m) => `${m.topic}:${m.payload.length}`).sort(), ['r/1:20', 'r/3:70', 'r/4:10']);
    await close(s);
  });

  test('5.0 QoS 0 retained over the cap: DISCONNECT 0x97; 3.1.1: closed', async () => {
    const c5 = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('r'), protocolVersion: 5 });
    c5.sendPacket({ cmd: 'publish', topic: 'r/5', payload: Buffer.from('x'), qos: 0, retain: true, dup: false, properties: {} });
    const p5 = await c5.log.whenClosed(5000);
    assert.equal(p5.find((p) => p.cmd === 'disconnect')?.reasonCode, QUOTA_EXCEEDED);
    const c4 = await RawPeer.connected(broker, 'tcp', 4, { clientId: uniqueId('r'), protocolVersion: 4 });
    c4.sendPacket({ cmd: 'publish', topic: 'r/5', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: true, dup: false });
    const p4 = await c4.log.whenClosed(5000);
    assert.deepEqual(p4.map((p) => p.cmd), ['connack']);
    // a plain (not retained) publish is not limited
    const ok = await RawPeer.connected(broker, 'tcp', 4, { clientId: uniqueId('r'), protocolVersion: 4 });
    ok.sendPacket({ cmd: 'publish', topic: 'r/5', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
    await ok.log.first('puback');
    ok.destroy();
  });
});
