// --tls-ciphers: the OpenSSL cipher list for TLS 1.2 on mqtts (node:tls) and wss (uWS ssl_ciphers).
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
