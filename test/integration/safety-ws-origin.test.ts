// WebSocket upgrades from browsers: while anonymous access is on, an upgrade whose Origin header is not
// on --allowed-origins is refused with 403 (a web page the local user opens must not reach the broker);
// a listed origin, "*", or no Origin header at all (non-browser clients) is served.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, uniqueId } from '../helpers/clients.ts';

/** Status of a bare upgrade request with the given Origin (101 when it is accepted). */
async function upgradeStatus(url: string, origin: string | undefined): Promise<number> {
  const ws = new WebSocket(url, 'mqtt', origin === undefined ? {} : { headers: { Origin: origin } });
  const outcome = await Promise.race([
    once(ws, 'open').then(() => 101),
    once(ws, 'unexpected-response').then(([, res]) => (res as IncomingMessage).statusCode ?? 0),
    once(ws, 'error').then(([err]) => { throw err as Error; }),
  ]);
  ws.terminate();
  return outcome;
}

/** An MQTT 5 round trip over WebSocket with the given Origin header. */
async function roundTrip(broker: BrokerProcess, origin: string | undefined): Promise<void> {
  const client = await mqtt.connectAsync(broker.wsUrl(), {
    protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId(),
    wsOptions: origin === undefined ? {} : { headers: { Origin: origin } },
  });
  const topic = `origin/${uniqueId()}`;
  await client.subscribeAsync(topic, { qos: 1 });
  const got = collect(client, 1);
  await client.publishAsync(topic, 'hello', { qos: 1 });
  assert.equal((await got)[0]!.payload.toString(), 'hello');
  await close(client);
}

describe('WebSocket Origin check (anonymous access on)', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(['--allowed-origins', 'https://app.example.com,http://localhost:3000']); });
  after(async () => { await broker.stop(); });

  test('an upgrade with a foreign Origin is refused with 403 and logged', async () => {
    for (const origin of ['https://evil.example', 'http://app.example.com', 'https://app.example.com:444', 'null', 'http://localhost:3001']) {
      assert.equal(await upgradeStatus(broker.wsUrl(), origin), 403, origin);
    }
    assert.ok(broker.logs.some((l) => l['msg'] === 'websocket upgrade refused: origin not allowed' && l['origin'] === 'https://evil.example'));
  });

  test('a listed Origin is served', async () => {
    assert.equal(await upgradeStatus(broker.wsUrl(), 'http://localhost:3000'), 101);
    await roundTrip(broker, 'https://app.example.com');
  });

  test('an upgrade without Origin (a non-browser client) is served', async () => {
    await roundTrip(broker, undefined);
  });
});

describe('WebSocket Origin check without --allowed-origins', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(); });
  after(async () => { await broker.stop(); });

  test('every browser Origin is refused (even the broker\'s own address), clients without one are served', async () => {
    assert.equal(await upgradeStatus(broker.wsUrl(), `http://127.0.0.1:${broker.httpPort}`), 403);
    await roundTrip(broker, undefined);
  });

  test('an upgrade carrying an access token is decided by the token, whatever its Origin', async () => {
    const service = new WebPubSubServiceClient(broker.connectionString, 'default', { allowInsecureConnection: true });
    const { url } = await service.getClientAccessToken({ clientProtocol: 'mqtt' });
    assert.equal(await upgradeStatus(url, 'https://web-app.example'), 101);
    // A token that does not verify is refused as a token (401), not served for its Origin
    assert.equal(await upgradeStatus(`${broker.wsUrl()}?access_token=not.a.token`, 'https://web-app.example'), 401);
    assert.equal(await upgradeStatus(broker.wsUrl(), 'https://web-app.example'), 403);
  });
});

describe('WebSocket Origin check with --allowed-origins "*"', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(['--allowed-origins', '*']); });
  after(async () => { await broker.stop(); });

  test('"*" allows any Origin explicitly', async () => {
    assert.equal(await upgradeStatus(broker.wsUrl(), 'null'), 101);
    await roundTrip(broker, 'https://anything.example');
  });
});
