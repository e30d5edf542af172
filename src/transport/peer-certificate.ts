// Client certificates as a transport hands them on (PeerCertificate): from a TLS socket the broker
// terminated itself, or from a request header set by a TLS terminator in front of it.
import { createHash, X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import type { PeerCertificate } from './byte-channel.ts';

/** Node's `subjectAltName` ("DNS:a, email:b", values with special characters JSON-quoted) as a list. */
function splitAltNames(altNames: string | undefined): string[] {
  if (!altNames) return [];
  return (altNames.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? []).map((s) => s.trim()).filter((s) => s !== '');
}

/** The CN of an X509Certificate's `subject` ("C=..\nCN=..", one attribute per line). */
function commonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return undefined;
}

function fromX509(cert: X509Certificate, authorized: boolean): PeerCertificate {
  return {
    thumbprint: createHash('sha1').update(cert.raw).digest('hex'),
    pem: cert.toString(),
    subjectCN: commonName(cert.subject),
    subjectAltNames: splitAltNames(cert.subjectAltName),
    authorized,
  };
}

/**
 * The certificate the client presented on `socket` (after its handshake), or undefined when it sent
 * none. `authorized` is the handshake's verdict against the configured CAs: false for a certificate
 * that did not verify (accepted only when client certificates are not required).
 */
export function peerCertificateFrom(socket: tls.TLSSocket): PeerCertificate | undefined {
  let cert: X509Certificate | undefined;
  try {
    cert = socket.getPeerX509Certificate();
  } catch {
    return undefined;
  }
  return cert === undefined ? undefined : fromX509(cert, socket.authorized);
}

const PEM_BEGIN = '-----BEGIN CERTIFICATE-----';

/** The DER or PEM bytes a header value carries, or undefined if it is none of the three encodings. */
function headerBytes(value: string): Buffer | string | undefined {
  let v = value.trim();
  // Envoy's x-forwarded-client-cert: `By=...;Hash=...;Cert="<URL-encoded PEM>"`, one element per
  // proxy; the last one is the proxy next to the broker
  const xfcc = [...v.matchAll(/(?:^|[;,])\s*Cert="([^"]*)"/gi)];
  if (xfcc.length > 0) v = xfcc[xfcc.length - 1]![1]!;
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
  if (/^-----BEGIN%20CERTIFICATE/i.test(v) || /^%2D%2D%2D%2D%2DBEGIN/i.test(v)) {
    // URL-encoded PEM (nginx $ssl_client_escaped_cert, Envoy)
    try {
      v = decodeURIComponent(v);
    } catch {
      return undefined;
    }
  }
  if (v.startsWith(PEM_BEGIN)) {
    // PEM, possibly with its line breaks escaped (`\n`) or folded into spaces or tabs by the proxy
    const end = v.indexOf('-----END CERTIFICATE-----');
    if (end < 0) return undefined;
    const body = v.slice(PEM_BEGIN.length, end).replace(/\\[rnt]/g, '').replace(/\s+/g, '');
    return `${PEM_BEGIN}\n${body.replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;
  }
  // Base64 DER (Azure App Service X-ARR-ClientCert); whitespace tolerated, nothing else
  const b64 = v.replace(/\s+/g, '');
  if (b64 === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  return Buffer.from(b64, 'base64');
}

/**
 * The client certificate a TLS terminator forwarded in a request header: URL-encoded PEM (also as
 * the `Cert="..."` field of Envoy's x-forwarded-client-cert), base64 DER, or PEM. Undefined for
 * anything that does not parse as one certificate.
 *
 * `authorized` is true: the broker does not verify it (it has neither the TLS session nor, in
 * general, the terminator's CA list). Trusting this header is the operator's opt-in
 * (--client-cert-header), valid only when the terminator verifies client certificates and
 * overwrites the header on every request, so that clients cannot set it themselves.
 */
export function peerCertificateFromHeader(value: string): PeerCertificate | undefined {
  const bytes = headerBytes(value);
  if (bytes === undefined) return undefined;
  try {
    return fromX509(new X509Certificate(bytes), true);
  } catch {
    return undefined;
  }
}
