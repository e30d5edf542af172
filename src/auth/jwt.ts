// Client and REST access tokens (spec §3, §6.2). Azure signs both with HS256 using an access
// key's UTF-8 bytes; an operator may also let an identity provider issue RS256/ES256 client
// tokens (public keys as PEM or a JWKS URL). This is the only file that imports jose.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, SignJWT, type CryptoKey, type JWTPayload, type JWTVerifyOptions } from 'jose';
import type { TokenClaims } from './auth.ts';
import type { AccessKeys } from './keys.ts';

export type TokenRefusal =
  | 'missing'
  | 'malformed'
  | 'algorithm'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'audience'
  | 'claims'
  | 'jwks_unavailable';

/** `signer` names the key that verified the token: 'primary', 'secondary' (access keys) or 'public-key' (PEM or JWKS). */
export type VerifyResult = { ok: true; claims: TokenClaims; signer: string } | { ok: false; refusal: TokenRefusal; reason: string };

export interface TokenVerifierOptions {
  /** Read at each verify, so a rotated key applies at once. */
  keys: () => AccessKeys;
  /** `kid` header values naming each key (default 'primary' / 'secondary'). */
  keyIds?: { primary?: string; secondary?: string };
  /** Tolerance for `exp` and `nbf`, seconds (default 60). */
  clockSkewSec?: number;
  /** JWKS of the operator's identity provider (RS256/ES256 client tokens); fetched and cached by jose. */
  jwksUrl?: string;
  /** SPKI PEM public keys (RS256 for RSA keys, ES256 for P-256 keys). */
  publicKeysPem?: string[];
  /** Required `iss` of asymmetric tokens. */
  issuer?: string;
  /** Milliseconds since the epoch, for tests. */
  now?: () => number;
}

/** Longer tokens are refused before any parsing: a token is read on every connect attempt. */
const MAX_TOKEN_LENGTH = 16 * 1024;
/** Bounds the work and memory a single token can cause downstream (subscriptions, role checks). */
const MAX_ROLES_OR_GROUPS = 1000;
/** Claims with a meaning of their own; every other claim is forwarded as is (spec §3.2). */
const REGISTERED = new Set(['aud', 'exp', 'iat', 'nbf', 'iss', 'jti', 'sub', 'role', 'webpubsub.group', 'group']);
const ASYMMETRIC = new Set(['RS256', 'ES256']);
/** Client endpoint paths a token's `aud` may name (spec §2.1); the hub is the last segment. */
const CLIENT_AUDIENCE_PATH = /^\/(?:client|clients\/mqtt|clients\/socketio)\/hubs\/([^/]+)$/;

type Refused = Extract<VerifyResult, { ok: false }>;
/** A payload whose signature verified, wrapped so that no claim can pass for a refusal. */
type Verified = { payload: JWTPayload; signer: string };
const refuse = (refusal: TokenRefusal, reason: string): Refused => ({ ok: false, refusal, reason });

/** `s` percent-decoded, or undefined when it is not valid percent-encoding. */
function decoded(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** The pathname of `url` without a trailing '/'; a bare path is accepted (host is ignored anyway). */
function pathOf(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url, 'http://host.invalid');
  } catch {
    return undefined;
  }
  return parsed.pathname.length > 1 ? parsed.pathname.replace(/\/$/, '') : parsed.pathname;
}

/** Does one client-token audience name hub `hub`'s client endpoint, whatever its scheme and host? */
function clientAudienceMatches(aud: string, hub: string): boolean {
  const path = pathOf(aud);
  const segment = path === undefined ? undefined : CLIENT_AUDIENCE_PATH.exec(path)?.[1];
  if (segment === undefined) return false;
  return decoded(segment)?.toLowerCase() === hub.toLowerCase();
}

/**
 * Does a REST token's `aud` name the request URL (spec §6.2)? Query strings and a trailing '/'
 * are ignored (the SDK puts the query in `aud`; the docs say not to), and so are scheme and host
 * (the SDK signs with the connection-string host, which a proxy may rewrite). The path must be
 * equal, except that the hub segment of `/api/hubs/{hub}` is compared case-insensitively.
 */
export function audienceMatchesRequest(aud: string | readonly string[], requestUrl: string): boolean {
  const request = pathOf(requestUrl)?.split('/');
  if (request === undefined) return false;
  const candidates = typeof aud === 'string' ? [aud] : aud;
  return candidates.some((candidate) => {
    const path = pathOf(candidate)?.split('/');
    if (path === undefined || path.length !== request.length) return false;
    return path.every((segment, i) => {
      const other = request[i]!;
      if (segment === other) return true;
      if (i !== 3 || path[1] !== 'api' || path[2] !== 'hubs') return false;
      const hub = decoded(segment);
      return hub !== undefined && hub.toLowerCase() === decoded(other)?.toLowerCase();
    });
  });
}

/** `value` as a list of strings (a string or an array of strings), or undefined if it is neither. */
function stringList(value: unknown): string[] | undefined {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  return undefined;
}

/** Distinct non-empty strings, in first-seen order. */
function distinct(values: string[]): string[] {
  return [...new Set(values.filter((v) => v !== ''))];
}

/** The Web PubSub meaning of a verified payload (spec §3.2), or why it cannot be used. */
function claimsOf(payload: JWTPayload): { ok: true; claims: TokenClaims } | Refused {
  const sub = payload.sub;
  if (sub !== undefined && typeof sub !== 'string') return refuse('claims', 'the "sub" claim is not a string');
  const roles = payload.role === undefined ? [] : stringList(payload.role);
  if (roles === undefined) return refuse('claims', 'the "role" claim is not a string or a list of strings');
  const groups: string[] = [];
  for (const name of ['webpubsub.group', 'group']) {
    const value = payload[name] === undefined ? [] : stringList(payload[name]);
    if (value === undefined) return refuse('claims', `the "${name}" claim is not a string or a list of strings`);
    groups.push(...value);
  }
  if (roles.length > MAX_ROLES_OR_GROUPS) return refuse('claims', `more than ${MAX_ROLES_OR_GROUPS} roles`);
  if (groups.length > MAX_ROLES_OR_GROUPS) return refuse('claims', `more than ${MAX_ROLES_OR_GROUPS} groups`);
  const asText = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v) ?? 'null');
  // fromEntries defines own properties: a claim named "__proto__" cannot change the object's prototype.
  const claims = Object.fromEntries(
    Object.entries(payload)
      .filter(([name]) => !REGISTERED.has(name))
      .map(([name, value]) => [name, Array.isArray(value) ? value.map(asText) : [asText(value)]]),
  );
  const result: TokenClaims = { userId: sub, roles: distinct(roles), groups: distinct(groups), claims };
  return { ok: true, claims: result };
}

/**
 * A jose failure as a refusal; `reason` is our own text so that nothing of the token leaks.
 * `fromJwks`: the call used the remote key set, so a non-token failure means it could not be fetched.
 */
function refusalOf(err: unknown, fromJwks = false): Refused {
  if (err instanceof errors.JWTExpired) return refuse('expired', 'the token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' && err.reason === 'check_failed') return refuse('not_yet_valid', 'the token is not valid yet');
    if (err.claim === 'exp' && err.reason === 'missing') return refuse('claims', 'the token has no "exp" claim');
    if (err.claim === 'iss') return refuse('claims', 'the token was issued by an unexpected issuer');
    return refuse('claims', `the "${err.claim}" claim is invalid`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return refuse('signature', 'the token signature does not verify');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return refuse('signature', 'no key of the identity provider verifies the token');
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return refuse('algorithm', 'the token algorithm is not accepted');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return refuse('malformed', 'the token is not a well-formed JWT');
  }
  // What remains of a JWKS call is the fetch: timeout, network error (a TypeError from fetch),
  // non-200, unparsable key set.
  if (fromJwks || err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
    return refuse('jwks_unavailable', "the identity provider's key set cannot be fetched");
  }
  return refuse('malformed', 'the token cannot be verified');
}

/** A PEM public key with the one algorithm it may verify. */
interface PublicKey {
  alg: 'RS256' | 'ES256';
  key: KeyObject;
}

function publicKeyOf(pem: string, index: number): PublicKey {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error(`public key #${index + 1} is not a PEM public key`);
  }
  if (key.asymmetricKeyType === 'rsa') return { alg: 'RS256', key };
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return { alg: 'ES256', key };
  throw new Error(`public key #${index + 1} is neither an RSA nor a P-256 key (RS256/ES256)`);
}

export class TokenVerifier {
  readonly #keys: () => AccessKeys;
  readonly #primaryId: string;
  readonly #secondaryId: string;
  readonly #skewSec: number;
  readonly #now: () => number;
  readonly #issuer: string | undefined;
  readonly #publicKeys: PublicKey[];
  readonly #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  /** Throws if a PEM key or the JWKS URL is unusable: a configuration error shows at start. */
  constructor(options: TokenVerifierOptions) {
    this.#keys = options.keys;
    this.#primaryId = options.keyIds?.primary ?? 'primary';
    this.#secondaryId = options.keyIds?.secondary ?? 'secondary';
    this.#skewSec = options.clockSkewSec ?? 60;
    this.#now = options.now ?? Date.now;
    this.#issuer = options.issuer;
    this.#publicKeys = (options.publicKeysPem ?? []).map(publicKeyOf);
    // jose caches the set (10 min), refetches at most every 30 s for an unknown `kid`, times out at 5 s.
    if (options.jwksUrl !== undefined && !/^https?:\/\//i.test(options.jwksUrl)) throw new Error('the JWKS URL must be http or https');
    this.#jwks = options.jwksUrl === undefined ? undefined : createRemoteJWKSet(new URL(options.jwksUrl));
  }

  /** A client access token (query `access_token` or `Authorization: Bearer`) for hub `hub`. */
  async verifyClientToken(token: string | undefined, hub: string): Promise<VerifyResult> {
    return this.#verify(token, true, (aud) => aud.some((a) => clientAudienceMatches(a, hub)));
  }

  /** A REST request's bearer token (spec §6.2). Only access keys sign these, never an identity provider. */
  async verifyRestToken(token: string | undefined, requestUrl: string): Promise<VerifyResult> {
    return this.#verify(token, false, (aud) => audienceMatchesRequest(aud, requestUrl));
  }

  async #verify(token: string | undefined, allowAsymmetric: boolean, audienceOk: (aud: string[]) => boolean): Promise<VerifyResult> {
    if (token === undefined || token === '') return refuse('missing', 'no access token');
    if (token.length > MAX_TOKEN_LENGTH) return refuse('malformed', `the token is longer than ${MAX_TOKEN_LENGTH} characters`);
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return refuse('malformed', 'the token is not a well-formed JWT');
    }
    // The header decides which keys may be tried, and each key is bound to one algorithm: an HMAC
    // secret never meets an RS/ES token and a public key never meets an HS token (alg confusion).
    let verified: Verified | Refused;
    if (header.alg === 'HS256') {
      verified = await this.#verifyHmac(token, header.kid);
    } else if (!ASYMMETRIC.has(String(header.alg))) {
      return refuse('algorithm', 'the token algorithm is not accepted (HS256, or RS256/ES256 when configured)');
    } else if (!allowAsymmetric) {
      return refuse('algorithm', 'only access keys (HS256) sign REST requests');
    } else if (this.#publicKeys.length === 0 && this.#jwks === undefined) {
      return refuse('algorithm', 'RS256/ES256 tokens are not accepted: no public key or JWKS URL is configured');
    } else {
      verified = await this.#verifyAsymmetric(token, String(header.alg));
    }
    if (!('payload' in verified)) return verified;
    const { payload } = verified;
    const aud = payload.aud === undefined ? [] : stringList(payload.aud);
    if (aud === undefined) return refuse('claims', 'the "aud" claim is not a string or a list of strings');
    if (aud.length === 0) return refuse('audience', 'the token has no audience');
    if (!audienceOk(aud)) return refuse('audience', 'the token audience does not name this endpoint');
    const claims = claimsOf(payload);
    return claims.ok ? { ...claims, signer: verified.signer } : claims;
  }

  /** Options common to every jwtVerify call: `exp` required, clock skew, our clock. */
  #options(algorithms: string[]): JWTVerifyOptions {
    return { algorithms, requiredClaims: ['exp'], clockTolerance: this.#skewSec, currentDate: new Date(this.#now()) };
  }

  async #verifyHmac(token: string, kid: string | undefined): Promise<Verified | Refused> {
    const { primary, secondary } = this.#keys();
    const both: Array<[string, string]> = [['primary', primary], ['secondary', secondary]];
    const named = kid === this.#primaryId ? [both[0]!] : kid === this.#secondaryId ? [both[1]!] : both;
    const encoder = new TextEncoder();
    let last: unknown;
    for (const [signer, key] of named) {
      if (key === '') continue;
      try {
        // The key string's UTF-8 bytes, not its base64 decoding: that is what the SDKs sign with.
        return { payload: (await jwtVerify(token, encoder.encode(key), this.#options(['HS256']))).payload, signer };
      } catch (err) {
        // Only a signature mismatch means "try the other key"; an expired token signed by this key stays expired.
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) return refusalOf(err);
        last = err;
      }
    }
    return last === undefined ? refuse('signature', 'no access key is configured') : refusalOf(last);
  }

  async #verifyAsymmetric(token: string, alg: string): Promise<Verified | Refused> {
    const options = this.#options([alg]);
    if (this.#issuer !== undefined) options.issuer = this.#issuer;
    const candidates: Array<KeyObject | CryptoKey> = this.#publicKeys.filter((k) => k.alg === alg).map((k) => k.key);
    let fromJwks = false;
    for (let i = 0; ; i++) {
      const key = candidates[i];
      if (key === undefined) {
        if (this.#jwks === undefined || fromJwks) return refuse('signature', 'no configured public key verifies the token');
        fromJwks = true;
        try {
          return { payload: (await jwtVerify(token, this.#jwks, options)).payload, signer: 'public-key' };
        } catch (err) {
          // A token without `kid` matches several keys of the set: jose hands them over to try in turn.
          if (!(err instanceof errors.JWKSMultipleMatchingKeys)) return refusalOf(err, true);
          for await (const k of err as unknown as AsyncIterable<CryptoKey>) candidates.push(k);
          continue;
        }
      }
      try {
        return { payload: (await jwtVerify(token, key, options)).payload, signer: 'public-key' };
      } catch (err) {
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) return refusalOf(err, fromJwks);
      }
    }
  }
}

/**
 * A client access token as the SDK's getClientAccessToken makes it (spec §3.1, §3.2): HS256 with
 * the key's UTF-8 bytes, header {alg, typ}, claims aud, iat, exp, and sub / role /
 * webpubsub.group when given. `audience` is the client endpoint URL, e.g.
 * `http://127.0.0.1:8080/clients/mqtt/hubs/hub1`.
 */
export async function signClientToken(
  key: string,
  opts: { audience: string; userId?: string; roles?: string[]; groups?: string[]; expiresInSec: number; now?: () => number },
): Promise<string> {
  if (!Number.isFinite(opts.expiresInSec) || opts.expiresInSec <= 0) throw new RangeError('expiresInSec must be a positive number');
  const payload: JWTPayload = {};
  if (opts.roles !== undefined) payload.role = opts.roles;
  if (opts.groups !== undefined) payload['webpubsub.group'] = opts.groups;
  const iat = Math.floor((opts.now ?? Date.now)() / 1000);
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(iat)
    .setExpirationTime(iat + Math.ceil(opts.expiresInSec))
    .setAudience(opts.audience);
  if (opts.userId !== undefined && opts.userId !== '') jwt.setSubject(opts.userId);
  return jwt.sign(new TextEncoder().encode(key));
}
