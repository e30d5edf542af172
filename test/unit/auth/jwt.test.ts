// Client and REST token verification against tokens made by the real @azure/web-pubsub SDK, by
// hand (refusals) and by identity-provider keys (RS256/ES256 from PEM or a local JWKS server).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT, type JWTPayload } from 'jose';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import type { TokenClaims } from '../../../src/auth/auth.ts';
import { audienceMatchesRequest, signClientToken, TokenVerifier, type TokenVerifierOptions, type VerifyResult } from '../../../src/auth/jwt.ts';
import { connectionString, type AccessKeys } from '../../../src/auth/keys.ts';

const PRIMARY = 'c2VjcmV0LXByaW1hcnkta2V5LWZvci10ZXN0cy0wMDE=';
const SECONDARY = 'c2VjcmV0LXNlY29uZGFyeS1rZXktZm9yLXRlc3RzLTI=';
const KEYS: AccessKeys = { primary: PRIMARY, secondary: SECONDARY };
const ENDPOINT = 'http://127.0.0.1:8080';
const AUD = `${ENDPOINT}/clients/mqtt/hubs/Hub1`;
/** A fixed clock for hand-made tokens, ms. */
const NOW = 1_700_000_000_000;
const NOW_SEC = NOW / 1000;

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function verifier(options: Partial<TokenVerifierOptions> = {}): TokenVerifier {
  return new TokenVerifier({ keys: () => KEYS, ...options });
}

/** An HS256 token signed with `secret` (UTF-8), header and payload exactly as given. */
function handSigned(header: object, payload: object, secret: string): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** A jose-signed token with claims `payload` (aud and exp included unless overridden with undefined). */
async function signed(
  key: Uint8Array | KeyObject,
  payload: JWTPayload,
  header: { alg: string; kid?: string } = { alg: 'HS256' },
): Promise<string> {
  return new SignJWT({ aud: AUD, iat: NOW_SEC, exp: NOW_SEC + 3600, ...payload }).setProtectedHeader({ ...header, typ: 'JWT' }).sign(key);
}

function assertClaims(r: VerifyResult, expected: TokenClaims, signer?: string): void {
  assert.ok(r.ok, `expected acceptance, got ${JSON.stringify(r)}`);
  assert.deepEqual(r.claims, expected);
  if (signer !== undefined) assert.equal(r.signer, signer);
}

function assertRefused(r: VerifyResult, refusal: string, token?: string): void {
  assert.equal(r.ok, false, `expected a ${refusal} refusal, got ${JSON.stringify(r)}`);
  if (r.ok) return;
  assert.equal(r.refusal, refusal, r.reason);
  assert.ok(r.reason.length > 0);
  if (token) assert.ok(!r.reason.includes(token) && !r.reason.includes(token.split('.')[1] ?? '#'), 'reason must not carry the token');
}

const sdkClient = (hub = 'Hub1'): WebPubSubServiceClient =>
  new WebPubSubServiceClient(connectionString(ENDPOINT, PRIMARY), hub, { allowInsecureConnection: true });

describe('client tokens made by @azure/web-pubsub', () => {
  const options = { userId: 'user1', roles: ['webpubsub.joinLeaveGroup', 'webpubsub.sendToGroup.g1'], groups: ['g1', 'g2'], expirationTimeInMinutes: 5 };
  const expected: TokenClaims = { userId: 'user1', roles: options.roles, groups: ['g1', 'g2'], claims: {} };

  test('default client endpoint token: right claims for hub Hub1 and hub1', async () => {
    const { token } = await sdkClient().getClientAccessToken(options);
    assertClaims(await verifier().verifyClientToken(token, 'Hub1'), expected, 'primary');
    assertClaims(await verifier().verifyClientToken(token, 'hub1'), expected);
  });

  test('MQTT endpoint token: right claims for hub Hub1 and hub1', async () => {
    const { token } = await sdkClient().getClientAccessToken({ ...options, clientProtocol: 'mqtt' });
    assertClaims(await verifier().verifyClientToken(token, 'Hub1'), expected);
    assertClaims(await verifier().verifyClientToken(token, 'hub1'), expected);
  });

  test('a token without userId, roles or groups', async () => {
    const { token } = await sdkClient().getClientAccessToken({ clientProtocol: 'mqtt' });
    assertClaims(await verifier().verifyClientToken(token, 'Hub1'), { userId: undefined, roles: [], groups: [], claims: {} });
  });

  test('a token signed with the secondary key is accepted', async () => {
    const cs = connectionString(ENDPOINT, SECONDARY);
    const { token } = await new WebPubSubServiceClient(cs, 'Hub1', { allowInsecureConnection: true }).getClientAccessToken({ userId: 'u2' });
    assertClaims(await verifier().verifyClientToken(token, 'Hub1'), { userId: 'u2', roles: [], groups: [], claims: {} }, 'secondary');
  });

  test('the wrong hub in aud is refused', async () => {
    const { token } = await sdkClient().getClientAccessToken({ clientProtocol: 'mqtt' });
    assertRefused(await verifier().verifyClientToken(token, 'Hub2'), 'audience', token);
  });

  test('keys are read at each verify: a regenerated key stops verifying at once', async () => {
    const { token } = await sdkClient().getClientAccessToken({ clientProtocol: 'mqtt' });
    let keys = KEYS;
    const v = new TokenVerifier({ keys: () => keys });
    assert.equal((await v.verifyClientToken(token, 'Hub1')).ok, true);
    keys = { primary: 'a-brand-new-primary-key-000000000000', secondary: SECONDARY };
    assertRefused(await v.verifyClientToken(token, 'Hub1'), 'signature', token);
  });
});

describe('client token refusals', () => {
  test('missing', async () => {
    assertRefused(await verifier().verifyClientToken(undefined, 'Hub1'), 'missing');
    assertRefused(await verifier().verifyClientToken('', 'Hub1'), 'missing');
  });

  test('garbage', async () => {
    assertRefused(await verifier().verifyClientToken('not a token', 'Hub1'), 'malformed', 'not a token');
  });

  test('three dot-separated garbage parts', async () => {
    assertRefused(await verifier().verifyClientToken('abc.def.ghi', 'Hub1'), 'malformed', 'abc.def.ghi');
    assertRefused(await verifier().verifyClientToken('...', 'Hub1'), 'malformed');
  });

  test('longer than 16 KiB, before any parsing', async () => {
    const token = await signed(utf8(PRIMARY), { pad: 'x'.repeat(16 * 1024) });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'malformed', token);
  });

  test('alg none', async () => {
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ aud: AUD, exp: NOW_SEC + 60 })}.`;
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'algorithm', token);
  });

  test('another HMAC algorithm (HS512) signed with the right key', async () => {
    const token = await signed(utf8(PRIMARY), {}, { alg: 'HS512' });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'algorithm', token);
  });

  test('HS256 signed with a wrong key', async () => {
    const token = handSigned({ alg: 'HS256', typ: 'JWT' }, { aud: AUD, exp: NOW_SEC + 60 }, 'not-one-of-the-configured-keys');
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'signature', token);
  });

  test('the key is the string UTF-8, not base64-decoded', async () => {
    const token = await signed(Buffer.from(PRIMARY, 'base64'), {});
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'signature', token);
  });

  test('kid naming the secondary key but signed with the primary is refused; the right kid is accepted', async () => {
    const v = verifier({ now: () => NOW });
    assertRefused(await v.verifyClientToken(await signed(utf8(PRIMARY), {}, { alg: 'HS256', kid: 'secondary' }), 'Hub1'), 'signature');
    assert.equal((await v.verifyClientToken(await signed(utf8(SECONDARY), {}, { alg: 'HS256', kid: 'secondary' }), 'Hub1')).ok, true);
    // an unknown kid: every key is tried
    assert.equal((await v.verifyClientToken(await signed(utf8(SECONDARY), {}, { alg: 'HS256', kid: 'other' }), 'Hub1')).ok, true);
    // configured key ids
    const named = verifier({ now: () => NOW, keyIds: { primary: 'k1', secondary: 'k2' } });
    assertRefused(await named.verifyClientToken(await signed(utf8(PRIMARY), {}, { alg: 'HS256', kid: 'k2' }), 'Hub1'), 'signature');
    assert.equal((await named.verifyClientToken(await signed(utf8(PRIMARY), {}, { alg: 'HS256', kid: 'k1' }), 'Hub1')).ok, true);
  });

  test('expired beyond the clock skew is refused, within it accepted', async () => {
    const token = await signed(utf8(PRIMARY), { exp: NOW_SEC });
    assert.equal((await verifier({ now: () => NOW + 59_000 }).verifyClientToken(token, 'Hub1')).ok, true);
    assertRefused(await verifier({ now: () => NOW + 61_000 }).verifyClientToken(token, 'Hub1'), 'expired', token);
    assertRefused(await verifier({ now: () => NOW + 11_000, clockSkewSec: 10 }).verifyClientToken(token, 'Hub1'), 'expired', token);
  });

  test('no exp is refused', async () => {
    const token = await signed(utf8(PRIMARY), { exp: undefined });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'claims', token);
  });

  test('nbf in the future beyond the skew is refused; not required', async () => {
    const token = await signed(utf8(PRIMARY), { nbf: NOW_SEC + 120 });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'not_yet_valid', token);
    assert.equal((await verifier({ now: () => NOW + 61_000 }).verifyClientToken(token, 'Hub1')).ok, true);
  });

  test('an /api/... audience is refused for client tokens', async () => {
    const token = await signed(utf8(PRIMARY), { aud: `${ENDPOINT}/api/hubs/Hub1` });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'audience', token);
  });

  test('no audience is refused', async () => {
    const token = await signed(utf8(PRIMARY), { aud: undefined });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'audience', token);
  });

  test('sub that is not a string is refused', async () => {
    const token = await signed(utf8(PRIMARY), { sub: 42 as unknown as string });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'claims', token);
  });

  test('more than 1000 roles or groups is refused', async () => {
    const many = Array.from({ length: 1001 }, (_, i) => `r${i}`);
    const v = verifier({ now: () => NOW });
    assertRefused(await v.verifyClientToken(await signed(utf8(PRIMARY), { role: many }), 'Hub1'), 'claims');
    assertRefused(await v.verifyClientToken(await signed(utf8(PRIMARY), { group: many }), 'Hub1'), 'claims');
    assert.equal((await v.verifyClientToken(await signed(utf8(PRIMARY), { role: many.slice(1) }), 'Hub1')).ok, true);
  });
});

describe('client token audiences and claims', () => {
  const v = verifier({ now: () => NOW });
  const verifyAud = async (aud: string | string[], hub = 'Hub1'): Promise<boolean> =>
    (await v.verifyClientToken(await signed(utf8(PRIMARY), { aud }), hub)).ok;

  test('any scheme, host and query; trailing slash; each client path kind; percent-encoded hub', async () => {
    assert.equal(await verifyAud('wss://public.example.com/client/hubs/hub1/'), true);
    assert.equal(await verifyAud('https://other:9999/clients/mqtt/hubs/HUB1?x=1'), true);
    assert.equal(await verifyAud('ws://h/clients/socketio/hubs/Hub1'), true);
    assert.equal(await verifyAud('http://h/client/hubs/chat%2Ehub', 'chat.hub'), true);
    assert.equal(await verifyAud('http://h/client/hubs/Hub1/extra'), false);
    assert.equal(await verifyAud('http://h/client/hubs/Hub12'), false);
    assert.equal(await verifyAud('http://h/clients/hubs/Hub1'), false);
  });

  test('an aud array matches when any element matches', async () => {
    assert.equal(await verifyAud(['https://x/api/other', 'wss://h/client/hubs/Hub1']), true);
    assert.equal(await verifyAud(['https://x/api/other', 'wss://h/client/hubs/Hub2']), false);
  });

  test('roles, groups and other claims are mapped', async () => {
    const token = await signed(utf8(PRIMARY), {
      sub: 'alice',
      role: 'webpubsub.sendToGroup',
      'webpubsub.group': ['g1', '', 'g2', 'g1'],
      group: 'g3',
      jti: 'id-1',
      iss: 'me',
      custom: 'x',
      list: ['a', 1, { b: 2 }],
      num: 5,
      obj: { k: 'v' },
      nothing: null,
    });
    assertClaims(await v.verifyClientToken(token, 'Hub1'), {
      userId: 'alice',
      roles: ['webpubsub.sendToGroup'],
      groups: ['g1', 'g2', 'g3'],
      claims: { custom: ['x'], list: ['a', '1', '{"b":2}'], num: ['5'], obj: ['{"k":"v"}'], nothing: ['null'] },
    });
  });

  test('a claim named __proto__ is kept as data and changes no prototype', async () => {
    const token = handSigned({ alg: 'HS256' }, JSON.parse(`{"aud":"${AUD}","exp":${NOW_SEC + 60},"__proto__":{"polluted":"yes"}}`), PRIMARY);
    const r = await v.verifyClientToken(token, 'Hub1');
    assert.ok(r.ok);
    assert.equal(Object.getPrototypeOf(r.claims.claims), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(r.claims.claims, '__proto__')?.value, ['{"polluted":"yes"}']);
  });

  test('a role claim that is not strings is refused', async () => {
    assertRefused(await v.verifyClientToken(await signed(utf8(PRIMARY), { role: [1, 2] }), 'Hub1'), 'claims');
  });
});

describe('asymmetric client tokens', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();

  test('RS256 accepted with publicKeysPem', async () => {
    const token = await signed(rsa.privateKey, { sub: 'idp-user', role: ['webpubsub.joinLeaveGroup'] }, { alg: 'RS256' });
    assertClaims(await verifier({ now: () => NOW, publicKeysPem: [ecPem, rsaPem] }).verifyClientToken(token, 'Hub1'), {
      userId: 'idp-user',
      roles: ['webpubsub.joinLeaveGroup'],
      groups: [],
      claims: {},
    });
  });

  test('RS256 refused without asymmetric configuration', async () => {
    const token = await signed(rsa.privateKey, {}, { alg: 'RS256' });
    assertRefused(await verifier({ now: () => NOW }).verifyClientToken(token, 'Hub1'), 'algorithm', token);
  });

  test('RS256 signed by another key pair is refused', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const token = await signed(other.privateKey, {}, { alg: 'RS256' });
    assertRefused(await verifier({ now: () => NOW, publicKeysPem: [rsaPem] }).verifyClientToken(token, 'Hub1'), 'signature', token);
  });

  test('HS/RS confusion: an HS256 token keyed with the public key PEM text is refused', async () => {
    const token = handSigned({ alg: 'HS256', typ: 'JWT' }, { aud: AUD, exp: NOW_SEC + 60 }, rsaPem);
    assertRefused(await verifier({ now: () => NOW, publicKeysPem: [rsaPem] }).verifyClientToken(token, 'Hub1'), 'signature', token);
  });

  test('ES256 accepted with publicKeysPem', async () => {
    const token = await signed(ec.privateKey, { sub: 'ec-user' }, { alg: 'ES256' });
    assertClaims(await verifier({ now: () => NOW, publicKeysPem: [ecPem] }).verifyClientToken(token, 'Hub1'), {
      userId: 'ec-user',
      roles: [],
      groups: [],
      claims: {},
    });
  });

  test('issuer enforced for asymmetric tokens', async () => {
    const v = verifier({ now: () => NOW, publicKeysPem: [rsaPem], issuer: 'https://idp.example' });
    assertRefused(await v.verifyClientToken(await signed(rsa.privateKey, { iss: 'https://evil.example' }, { alg: 'RS256' }), 'Hub1'), 'claims');
    assert.equal((await v.verifyClientToken(await signed(rsa.privateKey, { iss: 'https://idp.example' }, { alg: 'RS256' }), 'Hub1')).ok, true);
  });

  test('an unusable PEM is a configuration error', () => {
    assert.throws(() => verifier({ publicKeysPem: ['not a pem'] }), /public key #1 is not a PEM public key/);
  });

  describe('JWKS served over HTTP', () => {
    let server: Server;
    let url: string;
    let fetches = 0;
    before(async () => {
      const jwk = { ...(await exportJWK(rsa.publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
      server = createServer((_req, res) => {
        fetches++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    test('RS256 accepted; the key set is fetched once and cached', async () => {
      const v = verifier({ now: () => NOW, jwksUrl: url });
      const token = await signed(rsa.privateKey, { sub: 'jwks-user' }, { alg: 'RS256', kid: 'idp-1' });
      assertClaims(await v.verifyClientToken(token, 'Hub1'), { userId: 'jwks-user', roles: [], groups: [], claims: {} });
      assert.equal((await v.verifyClientToken(token, 'Hub1')).ok, true);
      assert.equal(fetches, 1);
    });

    test('a token from another key is refused as signature', async () => {
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const token = await signed(other.privateKey, {}, { alg: 'RS256', kid: 'idp-1' });
      assertRefused(await verifier({ now: () => NOW, jwksUrl: url }).verifyClientToken(token, 'Hub1'), 'signature', token);
    });

    test('the JWKS server stopped before the first fetch: jwks_unavailable', async () => {
      const gone = createServer();
      await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
      const goneUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/jwks`;
      await new Promise<void>((resolve) => gone.close(() => resolve()));
      const token = await signed(rsa.privateKey, {}, { alg: 'RS256', kid: 'idp-1' });
      assertRefused(await verifier({ now: () => NOW, jwksUrl: goneUrl }).verifyClientToken(token, 'Hub1'), 'jwks_unavailable', token);
    });
  });
});

describe('REST tokens (spec §6.2)', () => {
  const sdkUrl = 'http://localhost:8089/api/hubs/Hub1/:send?api-version=2024-12-01&excluded=x';
  /** What webPubSubKeyCredentialPolicy does: jwt.sign({}, key, {audience: request.url, expiresIn: "1h"}). */
  const sdkLike = (key: string, aud: string): Promise<string> =>
    new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').setAudience(aud).sign(utf8(key));

  test('a token made like the SDK does is accepted for the same URL reached through another host', async () => {
    const token = await sdkLike(PRIMARY, sdkUrl);
    assertClaims(await verifier().verifyRestToken(token, 'https://broker.internal/api/hubs/Hub1/:send?api-version=2024-12-01'), {
      userId: undefined,
      roles: [],
      groups: [],
      claims: {},
    });
    assert.equal((await verifier().verifyRestToken(token, '/api/hubs/hub1/:send')).ok, true, 'a bare request path, hub case ignored');
  });

  test('a wrong path is refused', async () => {
    const token = await sdkLike(SECONDARY, sdkUrl);
    assertRefused(await verifier().verifyRestToken(token, 'http://localhost:8089/api/hubs/Hub1/:closeConnections'), 'audience', token);
    assertRefused(await verifier().verifyRestToken(token, 'http://localhost:8089/api/hubs/Hub2/:send'), 'audience', token);
  });

  test('an RS256 token is refused for REST even when client tokens may use it', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setIssuedAt().setExpirationTime('1h').setAudience(sdkUrl).sign(rsa.privateKey);
    assertRefused(await verifier({ publicKeysPem: [pem] }).verifyRestToken(token, sdkUrl), 'algorithm', token);
  });

  test('the real SDK request: its Authorization header verifies against the URL the server sees', async () => {
    const seen: Array<{ url: string; token: string | undefined }> = [];
    const server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', token: req.headers.authorization?.replace(/^Bearer /, '') });
      res.writeHead(202).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const client = new WebPubSubServiceClient(connectionString(`http://127.0.0.1:${port}`, SECONDARY), 'Hub1', { allowInsecureConnection: true });
      await client.group('a/b').sendToAll('hi', { contentType: 'text/plain' });
      assert.equal(seen.length, 1);
      const { url, token } = seen[0]!;
      assert.match(url, /^\/api\/hubs\/Hub1\/groups\/a%2Fb\/:send\?/);
      assert.equal((await verifier().verifyRestToken(token, url)).ok, true);
      assertRefused(await verifier().verifyRestToken(token, '/api/hubs/Hub1/:send'), 'audience');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('audienceMatchesRequest', () => {
  const req = 'http://broker:8080/api/hubs/Hub1/:send?api-version=2024-12-01';
  test('query in aud tolerated', () => {
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1/:send?api-version=2024-12-01&excluded=x', req), true);
  });
  test('trailing slash tolerated', () => {
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1/:send/', req), true);
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1/:send', 'http://broker:8080/api/hubs/Hub1/:send/'), true);
  });
  test('different host and scheme tolerated', () => {
    assert.equal(audienceMatchesRequest('https://myservice.webpubsub.azure.com/api/hubs/Hub1/:send', req), true);
  });
  test('hub segment case ignored, other segments case-sensitive', () => {
    assert.equal(audienceMatchesRequest('http://broker/api/hubs/HUB1/:send', req), true);
    assert.equal(audienceMatchesRequest('http://broker/api/hubs/Hub1/:SEND', req), false);
    assert.equal(audienceMatchesRequest('http://broker/API/hubs/Hub1/:send', req), false);
  });
  test('different path refused', () => {
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1/:closeConnections', req), false);
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1', req), false);
    assert.equal(audienceMatchesRequest('http://broker:8080/api/hubs/Hub1/:send/more', req), false);
  });
  test('an array matches when one element matches', () => {
    assert.equal(audienceMatchesRequest(['http://x/other', 'http://x/api/hubs/Hub1/:send'], req), true);
    assert.equal(audienceMatchesRequest([], req), false);
  });
});

describe('signClientToken', () => {
  test('makes what the SDK makes: HS256, typ JWT, no kid, the claims verify back', async () => {
    const token = await signClientToken(PRIMARY, {
      audience: AUD,
      userId: 'bob',
      roles: ['webpubsub.joinLeaveGroup'],
      groups: ['g1'],
      expiresInSec: 600,
      now: () => NOW,
    });
    const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()) as unknown);
    assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
    assert.deepEqual(payload, { role: ['webpubsub.joinLeaveGroup'], 'webpubsub.group': ['g1'], iat: NOW_SEC, exp: NOW_SEC + 600, aud: AUD, sub: 'bob' });
    assertClaims(await verifier({ now: () => NOW }).verifyClientToken(token, 'hub1'), {
      userId: 'bob',
      roles: ['webpubsub.joinLeaveGroup'],
      groups: ['g1'],
      claims: {},
    });
    assertRefused(await verifier({ now: () => NOW + 661_000 }).verifyClientToken(token, 'hub1'), 'expired');
  });

  test('without userId, roles and groups the token carries none', async () => {
    const token = await signClientToken(SECONDARY, { audience: AUD, expiresInSec: 60, now: () => NOW });
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as unknown;
    assert.deepEqual(payload, { iat: NOW_SEC, exp: NOW_SEC + 60, aud: AUD });
  });

  test('a non-positive lifetime is refused', async () => {
    await assert.rejects(signClientToken(PRIMARY, { audience: AUD, expiresInSec: 0 }), RangeError);
  });
});
