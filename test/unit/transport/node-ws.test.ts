// The MQTT WebSocket endpoints mounted on a Node server with `ws` (src/transport/node-ws.ts): the
// same answers as the uWS mount (subprotocol, hub rule, admission, echo), and over TLS the client
// certificate reaches AcceptInfo.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type net from 'node:net';
import WebSocket from 'ws';
import type { AcceptInfo, ByteChannel } from '../../../src/transport/byte-channel.ts';
import { mqttWsEndpoints } from '../../../src/transport/mqtt-ws.ts';
import { listenNodeWss, mountNodeWsEndpoints, type NodeWssListener } from '../../../src/transport/node-ws.ts';
import type { WsMount } from '../../../src/transport/ws-endpoint.ts';
import { makeTestCertificates, type TestCertificates } from '../../helpers/certificates.ts';

const accepted: Array<{ channel: ByteChannel; info: AcceptInfo }> = [];
let admitting = true;
const endpoints = () => mqttWsEndpoints({
  defaultHub: 'default', maxPayloadBytes: 1024, transport: 'ws',
  onConnection: (channel, info) => {
    accepted.push({ channel, info });
    // Echo: the bytes back, so the test sees the channel carry data both ways
    channel.sink = { channelData: (b) => { channel.write(b); }, channelDrain: () => undefined, channelClosed: () => undefined };
  },
  admit: () => admitting,
  isValidHub: (name) => /^[A-Za-z][A-Za-z0-9_]{0,127}$/.test(name),
});

type Outcome = { ok: true; ws: WebSocket } | { ok: false; status: number; body: string };

function upgrade(url: string, protocols: string[] | undefined, options: WebSocket.ClientOptions = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options);
    const timer = setTimeout(() => reject(new Error('no answer in 5 s')), 5000);
    ws.once('open', () => { clearTimeout(timer); resolve({ ok: true, ws }); });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => { clearTimeout(timer); resolve({ ok: false, status: res.statusCode ?? 0, body }); });
    });
    ws.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

describe('node-ws mount (plain HTTP server)', () => {
  let server: http.Server;
  let mount: WsMount;
  let base: string;
  before(async () => {
    server = http.createServer();
    mount = mountNodeWsEndpoints(server, endpoints());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    mount.closeAll();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test('an offer without an MQTT subprotocol: 400', async () => {
    const up = await upgrade(`${base}/clients/mqtt/hubs/h1`, ['json.webpubsub.azure.v1']);
    assert.equal(up.ok, false);
    assert.deepEqual(up.ok ? undefined : [up.status, up.body], [400, 'MQTT over WebSocket needs the "mqtt" subprotocol']);
  });

  test('an invalid hub name: 400', async () => {
    const up = await upgrade(`${base}/clients/mqtt/hubs/1-bad`, ['mqtt']);
    assert.equal(up.ok ? 101 : up.status, 400);
  });

  test('another path: 404', async () => {
    const up = await upgrade(`${base}/elsewhere`, ['mqtt']);
    assert.equal(up.ok ? 101 : up.status, 404);
  });

  test('admission refused: 503', async () => {
    admitting = false;
    try {
      const up = await upgrade(`${base}/mqtt`, ['mqtt']);
      assert.equal(up.ok ? 101 : up.status, 503);
    } finally {
      admitting = true;
    }
  });

  test('echoes "mqtt" (preferred over mqttv3.1), names the hub, carries the token and bytes both ways', async () => {
    const before = accepted.length;
    const up = await upgrade(`${base}/clients/mqtt/hubs/h1/?access_token=abc`, ['mqttv3.1', 'mqtt']);
    assert.ok(up.ok);
    assert.equal(up.ws.protocol, 'mqtt');
    const { channel, info } = accepted[before]!;
    assert.deepEqual(info, { hub: 'h1', upgradeToken: 'abc' });
    assert.equal(channel.transport, 'ws');
    assert.equal(channel.remoteAddress, '127.0.0.1');
    const echoed = once(up.ws, 'message');
    up.ws.send(Buffer.from([0xc0, 0x00]));
    const [data, isBinary] = (await echoed) as [Buffer, boolean];
    assert.equal(isBinary, true);
    assert.deepEqual([...data], [0xc0, 0x00]);
    const closed = once(up.ws, 'close');
    up.ws.send('text frame');
    const [code] = (await closed) as [number];
    assert.equal(code, 1003, 'MQTT needs binary frames');
  });

  test('a message over maxPayloadBytes closes with 1009', async () => {
    const up = await upgrade(`${base}/mqtt`, ['mqtt']);
    assert.ok(up.ok);
    const closed = once(up.ws, 'close');
    up.ws.send(Buffer.alloc(2048));
    const [code] = (await closed) as [number];
    assert.equal(code, 1009);
  });
});

describe('node-ws listener over TLS: the client certificate', () => {
  let certs: TestCertificates;
  let listener: NodeWssListener;
  before(async () => {
    certs = makeTestCertificates();
    listener = await listenNodeWss({
      host: '127.0.0.1', port: 0, endpoints: endpoints(),
      tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca, requestCert: true },
    });
  });
  after(async () => {
    await listener.close();
    certs.remove();
  });

  test('reaches AcceptInfo; an unverified one is marked so; none is absent', async () => {
    const url = `wss://127.0.0.1:${listener.port}/mqtt`;
    const cases: Array<[string, WebSocket.ClientOptions, boolean | undefined]> = [
      ['known CA', { cert: certs.client.cert, key: certs.client.key }, true],
      ['unknown CA', { cert: certs.stranger.cert, key: certs.stranger.key }, false],
      ['none', {}, undefined],
    ];
    for (const [name, options, authorized] of cases) {
      const before = accepted.length;
      const up = await upgrade(url, ['mqtt'], { ca: certs.ca, ...options });
      assert.ok(up.ok, name);
      assert.equal(accepted[before]!.info.clientCertificate?.authorized, authorized, name);
      if (authorized) assert.equal(accepted[before]!.info.clientCertificate?.subjectCN, 'device-1');
      up.ws.close();
    }
  });
});
