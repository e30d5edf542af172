// TLS policy of mqtts (node:tls) and wss (uWS SSLApp): the minimum protocol version is explicit
// (--tls-min-version, default TLSv1.2) and the cipher list is Node's default unless --tls-ciphers is set.
// uWS has no option for the minimum version: its own floor is TLS 1.2, so wss stays at TLSv1.2 even when
// --tls-min-version is TLSv1.3 (the broker says so in its log at start).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-tls-policy-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=localhost',
  ], { stdio: 'ignore' });
});
after(() => { rmSync(dir, { recursive: true, force: true }); });

function tlsArgs(): string[] {
  return ['--mqtts-port', '0', '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')];
}
function mqttsPortOf(broker: BrokerProcess): number {
  return Number(broker.logs.find((l) => l['msg'] === 'tern listening')!['mqttsPort']);
}

/** Handshake outcome: "ok <protocol>" or the error code. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    const timer = setTimeout(() => { socket.destroy(); resolve('timeout'); }, 10_000);
    socket.once('secureConnect', () => { clearTimeout(timer); resolve(`ok ${socket.getProtocol()}`); socket.destroy(); });
    socket.once('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(String(err.code)); });
  });
}
// A TLS 1.1 client needs security level 0 in this OpenSSL to offer TLS 1.1 at all
const tls11 = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;

describe('TLS policy by default', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker(tlsArgs()); });
  after(async () => { await broker.stop(); });

  test('minimum TLSv1.2: a TLS 1.1 client is refused with a protocol-version alert on mqtts and wss; TLS 1.2 is served', async () => {
    for (const port of [mqttsPortOf(broker), broker.httpPort]) {
      assert.equal(await handshake(port, tls11), 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', `port ${port}`);
      assert.equal(await handshake(port, { maxVersion: 'TLSv1.2' }), 'ok TLSv1.2', `port ${port}`);
    }
  });

  test('ciphers: Node\'s default list; a client offering only a cipher outside it is refused', async () => {
    // Node's default list ends in ...:HIGH:...:!CAMELLIA
    assert.match(tls.DEFAULT_CIPHERS, /:!CAMELLIA\b/);
    assert.equal(await handshake(mqttsPortOf(broker), { maxVersion: 'TLSv1.2', ciphers: 'CAMELLIA128-SHA' }), 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE');
    assert.equal(await handshake(mqttsPortOf(broker), { maxVersion: 'TLSv1.2', ciphers: 'CAMELLIA128-SHA:ECDHE-RSA-AES128-GCM-SHA256' }), 'ok TLSv1.2');
  });
});

describe('--tls-min-version TLSv1.3', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker([...tlsArgs(), '--tls-min-version', 'TLSv1.3']); });
  after(async () => { await broker.stop(); });

  test('mqtts refuses a TLSv1.2-max client with a protocol-version alert; wss keeps uWS\'s TLSv1.2 floor and the log says so', async () => {
    const mqtts = mqttsPortOf(broker);
    assert.equal(await handshake(mqtts, { maxVersion: 'TLSv1.2' }), 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.equal(await handshake(mqtts, {}), 'ok TLSv1.3');
    assert.equal(await handshake(broker.httpPort, tls11), 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.equal(await handshake(broker.httpPort, { maxVersion: 'TLSv1.2' }), 'ok TLSv1.2');
    const warning = broker.logs.find((l) => l['msg'] === 'wss cannot enforce --tls-min-version: uWebSockets.js accepts TLSv1.2 and TLSv1.3');
    assert.ok(warning, 'the broker warns that wss still accepts TLSv1.2');
  });
});

describe('--tls-ciphers', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker([...tlsArgs(), '--tls-ciphers', 'ECDHE-RSA-AES128-GCM-SHA256']); });
  after(async () => { await broker.stop(); });

  test('limits the TLS 1.2 ciphers of mqtts and wss', async () => {
    for (const port of [mqttsPortOf(broker), broker.httpPort]) {
      assert.equal(await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' }), 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', `port ${port}`);
      assert.equal(await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }), 'ok TLSv1.2', `port ${port}`);
    }
  });
});

describe('connection limits on mqtts', () => {
  let broker: BrokerProcess;
  before(async () => { broker = await startBroker([...tlsArgs(), '--max-connections-per-address', '1']); });
  after(async () => { await broker.stop(); });

  test('a connection over the per-address cap is refused before its TLS handshake', async () => {
    const port = mqttsPortOf(broker);
    // The first connection is admitted and counted once its CONNECT is answered
    const first = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    const connack = new Promise<Buffer>((resolve, reject) => {
      first.once('data', resolve);
      first.once('error', reject);
    });
    first.write(Buffer.from('100c00044d5154540402003c0000', 'hex'));
    assert.equal((await connack).toString('hex'), '20020000');
    // The second never completes a handshake (it used to, and was only then closed)
    assert.notEqual((await handshake(port, {})).slice(0, 2), 'ok');
    first.destroy();
  });
});
