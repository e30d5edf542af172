// Client certificates as transports hand them on: from a real local TLS connection, and from the
// request header of a TLS terminator (URL-encoded PEM, base64 DER, PEM).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { PeerCertificate } from '../../../src/transport/byte-channel.ts';
import { peerCertificateFrom, peerCertificateFromHeader } from '../../../src/transport/peer-certificate.ts';
import { makeTestCertificates, opensslThumbprint, type KeyPair, type TestCertificates } from '../../helpers/certificates.ts';

let certs: TestCertificates;
let server: tls.Server;
let port: number;
const seen: Array<PeerCertificate | undefined> = [];
const waiters: Array<(c: PeerCertificate | undefined) => void> = [];

before(async () => {
  certs = makeTestCertificates();
  server = tls.createServer({ cert: certs.server.cert, key: certs.server.key, ca: certs.ca, requestCert: true, rejectUnauthorized: false }, (socket) => {
    const c = peerCertificateFrom(socket);
    const w = waiters.shift();
    if (w) w(c);
    else seen.push(c);
    socket.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as net.AddressInfo).port;
});
after(async () => {
  server.close();
  certs.remove();
});

/** Connect with `pair` (or no certificate) and return what the server saw. */
async function handshake(pair: KeyPair | undefined): Promise<PeerCertificate | undefined> {
  const got = seen.length > 0 ? Promise.resolve(seen.shift()) : new Promise<PeerCertificate | undefined>((resolve) => waiters.push(resolve));
  const socket = tls.connect({ host: '127.0.0.1', port, ca: certs.ca, ...(pair ? { cert: pair.cert, key: pair.key } : {}) });
  socket.on('error', () => undefined);
  socket.resume();
  const result = await Promise.race([got, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no handshake in 5 s')), 5000).unref())]);
  socket.destroy();
  return result;
}

describe('peerCertificateFrom (a real TLS connection)', () => {
  test('a client certificate from the trusted CA: thumbprint as openssl computes it, PEM, CN, SANs, authorized', async () => {
    const c = await handshake(certs.client);
    assert.ok(c, 'a certificate');
    assert.equal(c.thumbprint, opensslThumbprint(certs.client.certFile));
    assert.match(c.thumbprint, /^[0-9a-f]{40}$/);
    assert.equal(new X509Certificate(c.pem).fingerprint, new X509Certificate(certs.client.cert).fingerprint);
    assert.equal(c.subjectCN, 'device-1');
    assert.deepEqual(c.subjectAltNames, ['email:device-1@example.com']);
    assert.equal(c.authorized, true);
  });

  test('a certificate from an unknown CA is reported, not authorized', async () => {
    const c = await handshake(certs.stranger);
    assert.ok(c);
    assert.equal(c.subjectCN, 'intruder');
    assert.equal(c.thumbprint, opensslThumbprint(certs.stranger.certFile));
    assert.equal(c.authorized, false);
  });

  test('no certificate: undefined', async () => {
    assert.equal(await handshake(undefined), undefined);
  });
});

describe('peerCertificateFromHeader', () => {
  let pem: string;
  let thumbprint: string;
  before(() => {
    pem = certs.client.cert.toString();
    thumbprint = opensslThumbprint(certs.client.certFile);
  });

  test('URL-encoded PEM (nginx $ssl_client_escaped_cert)', () => {
    const c = peerCertificateFromHeader(encodeURIComponent(pem));
    assert.equal(c?.thumbprint, thumbprint);
    assert.equal(c?.subjectCN, 'device-1');
    assert.equal(c?.authorized, true, 'the terminator verified it');
  });

  test('URL-encoded PEM in the Cert field of an x-forwarded-client-cert element list', () => {
    const other = encodeURIComponent(certs.stranger.cert.toString());
    const c = peerCertificateFromHeader(`By=spiffe://a;Cert="${other}",By=spiffe://b;Hash=abc;Cert="${encodeURIComponent(pem)}";Subject="CN=device-1"`);
    assert.equal(c?.thumbprint, thumbprint, 'the last element: the proxy next to the broker');
  });

  test('base64 DER (X-ARR-ClientCert)', () => {
    const der = new X509Certificate(pem).raw.toString('base64');
    assert.equal(peerCertificateFromHeader(der)?.thumbprint, thumbprint);
  });

  test('PEM, also with its line breaks escaped (\\n, \\r\\n) or folded into spaces', () => {
    assert.equal(peerCertificateFromHeader(pem)?.thumbprint, thumbprint);
    assert.equal(peerCertificateFromHeader(pem.replace(/\n/g, '\\n'))?.thumbprint, thumbprint);
    assert.equal(peerCertificateFromHeader(pem.replace(/\n/g, '\\r\\n'))?.thumbprint, thumbprint);
    assert.equal(peerCertificateFromHeader(pem.replace(/\n/g, ' '))?.thumbprint, thumbprint);
  });

  test('garbage: undefined', () => {
    for (const bad of ['', 'not a certificate', 'aGVsbG8gd29ybGQ=', '%ZZ', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----',
      '-----BEGIN%20CERTIFICATE-----%0A%ZZ', '-----BEGIN CERTIFICATE----- no end', 'Cert=""']) {
      assert.equal(peerCertificateFromHeader(bad), undefined, JSON.stringify(bad));
    }
  });
});
