// MQTT over TLS (mqtts) and WebSocket over TLS (wss) with a throw-away self-signed certificate.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, uniqueId } from '../helpers/clients.ts';

let broker: BrokerProcess;
let dir: string;
let mqttsPort: number;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=localhost',
  ], { stdio: 'ignore' });
  broker = await startBroker(['--mqtts-port', '0', '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')]);
  mqttsPort = Number(broker.logs.find((l) => l['msg'] === 'tern listening')!['mqttsPort']);
});
after(async () => {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS listeners', () => {
  for (const scheme of ['mqtts', 'wss'] as const) {
    test(`${scheme}: publish and receive over TLS`, async () => {
      const url = scheme === 'mqtts' ? `mqtts://localhost:${mqttsPort}` : `wss://localhost:${broker.httpPort}/mqtt`;
      const client = await mqtt.connectAsync(url, { protocolVersion: 5, rejectUnauthorized: false, reconnectPeriod: 0 });
      const topic = `tls/${uniqueId()}`;
      await client.subscribeAsync(topic, { qos: 1 });
      const got = collect(client, 1);
      await client.publishAsync(topic, 'secret', { qos: 1 });
      assert.equal((await got)[0]!.payload.toString(), 'secret');
      await close(client);
    });
  }

  for (const scheme of ['mqtts', 'wss'] as const) {
    test(`${scheme}: a client that does not trust the certificate is refused for that certificate`, async () => {
      const url = scheme === 'mqtts' ? `mqtts://localhost:${mqttsPort}` : `wss://localhost:${broker.httpPort}/mqtt`;
      // The refusal must come from the certificate check (self-signed, not in the trust store), not
      // from a timeout, a reset or a non-TLS listener
      await assert.rejects(mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 3000 }), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT', `a certificate error, got ${err.code}: ${err.message}`);
        return true;
      });
    });
  }

  test('https: GET /health is served on the same TLS port as wss', async () => {
    const req = https.get({ host: 'localhost', port: broker.httpPort, path: '/health', rejectUnauthorized: false });
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let body = '';
    for await (const chunk of res) body += String(chunk);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal((JSON.parse(body) as { status: string }).status, 'ok');
  });
});
