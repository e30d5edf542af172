// Throw-away certificates made with the openssl CLI in a temp dir: a CA, a server certificate for
// 127.0.0.1, a client certificate from that CA and one from a CA the broker does not know.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const OPENSSL = '/usr/bin/openssl';

export interface KeyPair {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestCertificates {
  dir: string;
  /** The CA the broker trusts (--tls-ca). */
  caFile: string;
  ca: Buffer;
  /** Server certificate for 127.0.0.1 (SAN IP:127.0.0.1), issued by the CA. */
  server: KeyPair;
  /** CN=device-1, SAN email:device-1@example.com, issued by the CA. */
  client: KeyPair;
  /** CN=intruder, issued by a CA the broker does not know. */
  stranger: KeyPair;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string, subject: string): void {
  openssl(['req', '-x509', ...ecKey, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

function issue(dir: string, ca: string, name: string, subject: string, extensions: string): KeyPair {
  openssl(['req', '-new', ...ecKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`], dir);
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/** Make the certificates (a few openssl runs, well under a second). */
export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-certs-'));
  makeCa(dir, 'ca', '/CN=Tern Test CA');
  makeCa(dir, 'other-ca', '/CN=Unknown CA');
  const server = issue(dir, 'ca', 'server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  const client = issue(dir, 'ca', 'client', '/CN=device-1', 'subjectAltName=email:device-1@example.com\nextendedKeyUsage=clientAuth\n');
  const stranger = issue(dir, 'other-ca', 'stranger', '/CN=intruder', 'extendedKeyUsage=clientAuth\n');
  const caFile = path.join(dir, 'ca.pem');
  return { dir, caFile, ca: readFileSync(caFile), server, client, stranger, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `openssl x509 -fingerprint -sha1` of a PEM file, as lowercase hex without colons. */
export function opensslThumbprint(certFile: string): string {
  const out = execFileSync(OPENSSL, ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha1'], { encoding: 'utf8' });
  const m = /=([0-9A-Fa-f:]+)\s*$/.exec(out);
  if (!m) throw new Error(`unexpected openssl output: ${out}`);
  return m[1]!.replace(/:/g, '').toLowerCase();
}
