// Client certificates on a real broker process: mqtts and the Node TLS WebSocket listener (--wss-port)
// with --tls-ca, with and without --tls-require-client-cert, and --tls-cert-user-id (the certificate
// as the client's credential when anonymous clients are denied). Certificates are made at the start with
// the openssl CLI (a CA, a server certificate for 127.0.0.1, a client of that CA, one of another CA).
// That the certificate (thumbprint, CN, verdict) reaches AcceptInfo is shown at the transport level:
// test/unit/transport/peer-certificate.test.ts and node-ws.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { makeTestCertificates, type KeyPair, type TestCertificates } from '../helpers/certificates.ts';
import { close, collect, uniqueId } from '../helpers/clients.ts';

let certs: TestCertificates;
/** --tls-require-client-cert */
let strict: BrokerProcess;
/** --tls-ca only: certificates requested, not required */
let lenient: BrokerProcess;

function brokerArgs(): string[] {
  return ['--store', 'memory', '--mqtts-port', '0', '--wss-port', '0',
    '--tls-cert', certs.server.certFile, '--tls-key', certs.server.keyFile, '--tls-ca', certs.caFile];
}

before(async () => {
  certs = makeTestCertificates();
  [strict, lenient] = await Promise.all([startBroker([...brokerArgs(), '--tls-require-client-cert']), startBroker(brokerArgs())]);
});
after(async () => {
  await Promise.all([strict?.stop(), lenient?.stop()]);
  certs?.remove();
});

type Outcome = { connected: MqttClient } | { error: NodeJS.ErrnoException | undefined };

/**
 * Connect once (no reconnect) and report how it ended: CONNACK, or an error / a close before any
 * CONNACK. Bounded: a connection that neither connects nor fails within 5 s fails the test.
 */
function attempt(url: string, identity: KeyPair | undefined, extra: IClientOptions = {}): Promise<Outcome> {
  const client = mqtt.connect(url, {
    protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 4000, clientId: uniqueId('cert'),
    ca: certs.ca, ...(identity ? { cert: identity.cert, key: identity.key } : {}), ...extra,
  });
  return new Promise((resolve, reject) => {
    let lastError: NodeJS.ErrnoException | undefined;
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Error(`${url}: neither connected nor refused within 5 s`));
    }, 5000);
    client.once('connect', () => {
      clearTimeout(timer);
      resolve({ connected: client });
    });
    client.on('error', (err) => { lastError = err as NodeJS.ErrnoException; });
    client.once('close', () => {
      if (client.connected) return;
      clearTimeout(timer);
      client.end(true);
      resolve({ error: lastError });
    });
  });
}

function assertConnected(outcome: Outcome): asserts outcome is { connected: MqttClient } {
  if ('connected' in outcome) return;
  assert.fail(`expected a CONNACK, got ${outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : 'a close'}`);
}

async function assertRoundTrip(client: MqttClient): Promise<void> {
  const topic = `certs/${uniqueId()}`;
  await client.subscribeAsync(topic, { qos: 1 });
  const got = collect(client, 1);
  await client.publishAsync(topic, 'signed', { qos: 1 });
  const [message] = await got;
  assert.equal(message!.payload.toString(), 'signed');
  assert.equal(message!.packet.qos, 1);
}

/** Refused during TLS: an error (a TLS alert, or the reset that follows it) or a close, never a CONNACK. */
function assertRefusedAtTls(outcome: Outcome, what: string): void {
  assert.ok(!('connected' in outcome), `${what}: must not get a CONNACK`);
  const err = outcome.error;
  if (err !== undefined) assert.match(String(err.code ?? err.message), /SSL|TLS|ECONNRESET|EPIPE|socket hang up|closed/i, `${what}: a TLS-level failure, got ${err.code}: ${err.message}`);
}

function mqttsUrl(b: BrokerProcess): string {
  assert.ok(b.mqttsPort, 'the broker reports its mqtts port');
  return `mqtts://127.0.0.1:${b.mqttsPort}`;
}

function wssUrl(b: BrokerProcess): string {
  assert.ok(b.wssPort, 'the broker reports its client-certificate wss port');
  return `wss://127.0.0.1:${b.wssPort}/clients/mqtt/hubs/h1`;
}

describe('mqtts with --tls-require-client-cert', () => {
  test('a client with a certificate from the configured CA connects and round-trips a QoS 1 message', async () => {
    const outcome = await attempt(mqttsUrl(strict), certs.client);
    assertConnected(outcome);
    await assertRoundTrip(outcome.connected);
    await close(outcome.connected);
  });

  test('a client with a certificate from an unknown CA is refused at the TLS handshake', async () => {
    assertRefusedAtTls(await attempt(mqttsUrl(strict), certs.stranger), 'unknown CA');
  });

  test('a client without a certificate is refused at the TLS handshake', async () => {
    assertRefusedAtTls(await attempt(mqttsUrl(strict), undefined), 'no certificate');
  });

  test('over TLS 1.2 the refusal is visibly the handshake\'s: an alert, and no secure connection', async () => {
    // With TLS 1.3 the client's side of the handshake ends before the server has checked its
    // certificate, so the refusal comes as an alert after it (above); TLS 1.2 shows it in the handshake
    for (const [identity, what] of [[certs.stranger, 'unknown CA'], [undefined, 'no certificate']] as const) {
      const socket = tls.connect({
        host: '127.0.0.1', port: strict.mqttsPort!, ca: certs.ca, maxVersion: 'TLSv1.2',
        ...(identity ? { cert: identity.cert, key: identity.key } : {}),
      });
      let secure = false;
      socket.once('secureConnect', () => { secure = true; });
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 5000);
        socket.once('error', (e) => { clearTimeout(timer); resolve(e); });
        socket.once('close', () => { clearTimeout(timer); resolve(undefined); });
      });
      socket.destroy();
      assert.equal(secure, false, `${what}: the handshake must not complete`);
      assert.match(String(err?.code), /^ERR_SSL_|ECONNRESET/, `${what}: a TLS failure, got ${err?.code}: ${err?.message}`);
    }
  });
});

describe('mqtts with --tls-ca only (requested, not required)', () => {
  test('a client without a certificate connects', async () => {
    const outcome = await attempt(mqttsUrl(lenient), undefined);
    assertConnected(outcome);
    await assertRoundTrip(outcome.connected);
    await close(outcome.connected);
  });

  test('a client with a certificate from an unknown CA connects too (the certificate is passed on as unverified)', async () => {
    const outcome = await attempt(mqttsUrl(lenient), certs.stranger);
    assertConnected(outcome);
    await close(outcome.connected);
  });
});

describe('the Node TLS WebSocket listener (--wss-port)', () => {
  test('with --tls-require-client-cert: a certificate from the configured CA is accepted and round-trips', async () => {
    const outcome = await attempt(wssUrl(strict), certs.client);
    assertConnected(outcome);
    await assertRoundTrip(outcome.connected);
    await close(outcome.connected);
  });

  test('with --tls-require-client-cert: a certificate from an unknown CA is refused', async () => {
    assertRefusedAtTls(await attempt(wssUrl(strict), certs.stranger), 'unknown CA over wss');
  });

  test('with --tls-require-client-cert: no certificate is refused', async () => {
    assertRefusedAtTls(await attempt(wssUrl(strict), undefined), 'no certificate over wss');
  });

  test('without it: a client without a certificate connects', async () => {
    const outcome = await attempt(wssUrl(lenient), undefined);
    assertConnected(outcome);
    await assertRoundTrip(outcome.connected);
    await close(outcome.connected);
  });

  test('the listening line names the port, distinct from the uWS HTTP port', () => {
    assert.ok(strict.wssPort && strict.wssPort !== strict.httpPort && strict.wssPort !== strict.mqttsPort);
  });
});

describe('--tls-cert-user-id cn with anonymous clients denied (certificates requested, not required)', () => {
  let broker: BrokerProcess & { databaseUrl: string | undefined };
  let db: pg.Client;

  before(async () => {
    broker = await startBroker(['--mqtts-port', '0', '--tls-cert', certs.server.certFile, '--tls-key', certs.server.keyFile,
      '--tls-ca', certs.caFile, '--tls-cert-user-id', 'cn', '--allow-anonymous=false']);
    db = new pg.Client({ connectionString: broker.databaseUrl });
    await db.connect();
  });
  after(async () => {
    await db?.end();
    await broker?.stop();
  });

  /** The `connect` audit row of `clientId` (a bounded poll: rows are written after the event). */
  async function connectRow(clientId: string): Promise<{ actor: string | null; detail: Record<string, unknown> | null }> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const { rows } = await db.query<{ actor: string | null; detail: Record<string, unknown> | null }>(
        "SELECT actor, detail FROM audit_events WHERE event = 'connect' AND client_id = $1", [clientId]);
      if (rows[0] !== undefined) return rows[0];
      if (Date.now() > deadline) throw new Error(`no connect audit row for ${clientId}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test('a client with a certificate from the CA connects as its CN: audit actor device-1, method certificate', async () => {
    const clientId = uniqueId('cn');
    const outcome = await attempt(mqttsUrl(broker), certs.client, { clientId });
    assertConnected(outcome);
    await assertRoundTrip(outcome.connected);
    const row = await connectRow(clientId);
    assert.equal(row.actor, 'device-1');
    assert.equal(row.detail?.['method'], 'certificate');
    await close(outcome.connected);
  });

  test('a client without a certificate is refused with CONNACK 0x87', async () => {
    const outcome = await attempt(mqttsUrl(broker), undefined);
    assert.ok(!('connected' in outcome), 'must not connect');
    assert.equal((outcome.error as { code?: unknown } | undefined)?.code, 0x87);
  });

  test('a client with a certificate from an unknown CA (unverified) is refused with CONNACK 0x87', async () => {
    const outcome = await attempt(mqttsUrl(broker), certs.stranger);
    assert.ok(!('connected' in outcome), 'must not connect');
    assert.equal((outcome.error as { code?: unknown } | undefined)?.code, 0x87);
  });
});
