// REST calls to a test broker signed the way the Web PubSub server SDK signs them (spec §6.2):
// HS256 with the access key's UTF-8 bytes, `aud` the full request URL, one hour of validity.
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import type { BrokerProcess } from './broker-process.ts';

/** A bearer token for `url` signed with `key`. */
export function restToken(url: string, key: string, expiresInSec = 3600): string {
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const iat = Math.floor(Date.now() / 1000);
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ aud: url, iat, exp: iat + expiresInSec })}`;
  return `${body}.${createHmac('sha256', Buffer.from(key, 'utf8')).update(body).digest('base64url')}`;
}

/**
 * Call `path` (with its query) on the broker's HTTP port; signed with its primary key unless `key` says otherwise (null: no token).
 * `body` is sent as JSON, `raw` as bytes of the given content type.
 */
export async function rest(
  broker: BrokerProcess, method: string, path: string, opts: { body?: unknown; raw?: { bytes: Buffer; contentType: string }; key?: string | null } = {},
): Promise<{ status: number; headers: Headers; json: unknown }> {
  const url = `http://${broker.host}:${broker.httpPort}${path}`;
  const headers: Record<string, string> = {};
  const key = opts.key === undefined ? broker.accessKey : opts.key;
  if (key !== null) headers['authorization'] = `Bearer ${restToken(url, key)}`;
  let body: string | Buffer | undefined;
  if (opts.raw !== undefined) {
    headers['content-type'] = opts.raw.contentType;
    body = opts.raw.bytes;
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const res = await fetch(url, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  let json: unknown;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = text; }
  return { status: res.status, headers: res.headers, json };
}

/**
 * The HTTP answer to a WebSocket upgrade offering "mqtt" (MQTT.js only reports a refused upgrade
 * as a close): status and body, or 101.
 */
export function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'mqtt', { headers });
    ws.once('open', () => { ws.terminate(); resolve({ status: 101, body: '' }); });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', (err) => reject(err));
  });
}
