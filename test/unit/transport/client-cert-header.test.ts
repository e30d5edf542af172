// The uWS mount's opt-in trusted header (--client-cert-header): the certificate a TLS terminator
// forwarded reaches the upgrade request and, through the MQTT endpoints, AcceptInfo. Without the
// option the same header is ignored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import WebSocket from 'ws';
import type { AcceptInfo, ByteChannel } from '../../../src/transport/byte-channel.ts';
import { mqttWsEndpoints } from '../../../src/transport/mqtt-ws.ts';
import { chooseUws, uwsCandidates } from '../../../src/transport/uws-loader.ts';
import { mountWsEndpoints, type WsMount } from '../../../src/transport/ws-endpoint.ts';
import { makeTestCertificates, opensslThumbprint, type TestCertificates } from '../../helpers/certificates.ts';

const { uws } = chooseUws(uwsCandidates);

let certs: TestCertificates;
const accepted: AcceptInfo[] = [];
const servers: Array<{ port: number; stop(): void }> = [];

async function serve(header: string | undefined): Promise<number> {
  const app = uws.App();
  const mount: WsMount = mountWsEndpoints(app, mqttWsEndpoints({
    defaultHub: 'default', maxPayloadBytes: 1024, transport: 'ws',
    onConnection: (channel: ByteChannel, info: AcceptInfo) => {
      accepted.push(info);
      channel.close();
    },
  }), header === undefined ? {} : { clientCertificateHeader: header });
  const token = await new Promise<unknown>((resolve) => app.listen('127.0.0.1', 0, resolve));
  assert.ok(token, 'listening');
  const port = uws.us_socket_local_port(token as Parameters<typeof uws.us_socket_local_port>[0]);
  servers.push({ port, stop: () => { uws.us_listen_socket_close(token as Parameters<typeof uws.us_listen_socket_close>[0]); mount.closeAll(); } });
  return port;
}

/** Open a WebSocket with `headers`, wait for its close (the test's onConnection closes it), return the AcceptInfo. */
async function acceptInfo(port: number, headers: Record<string, string>): Promise<AcceptInfo> {
  const before = accepted.length;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/clients/mqtt/hubs/h1`, ['mqtt'], { headers });
  const timer = setTimeout(() => ws.terminate(), 5000);
  await once(ws, 'close');
  clearTimeout(timer);
  assert.equal(accepted.length, before + 1, 'accepted once');
  return accepted[before]!;
}

let withHeader = 0;
let withoutHeader = 0;
before(async () => {
  certs = makeTestCertificates();
  withHeader = await serve('x-forwarded-client-cert');
  withoutHeader = await serve(undefined);
});
after(() => {
  for (const s of servers) s.stop();
  certs.remove();
});

describe('uWS mount: client certificate from a trusted header', () => {
  test('URL-encoded PEM and base64 DER both reach AcceptInfo, marked verified by the terminator', async () => {
    const pem = certs.client.cert.toString();
    const thumbprint = opensslThumbprint(certs.client.certFile);
    for (const value of [encodeURIComponent(pem), new X509Certificate(pem).raw.toString('base64')]) {
      const info = await acceptInfo(withHeader, { 'X-Forwarded-Client-Cert': value });
      assert.equal(info.hub, 'h1');
      assert.equal(info.clientCertificate?.thumbprint, thumbprint);
      assert.equal(info.clientCertificate?.subjectCN, 'device-1');
      assert.equal(info.clientCertificate?.authorized, true);
    }
  });

  test('garbage in the header: no certificate, the connection is still served', async () => {
    const info = await acceptInfo(withHeader, { 'X-Forwarded-Client-Cert': 'not a certificate' });
    assert.equal(info.clientCertificate, undefined);
  });

  test('without --client-cert-header the header is ignored', async () => {
    const info = await acceptInfo(withoutHeader, { 'X-Forwarded-Client-Cert': encodeURIComponent(certs.client.cert.toString()) });
    assert.equal(info.clientCertificate, undefined);
  });
});
