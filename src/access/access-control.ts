// Access control: who may connect (client tokens, user names and passwords, client certificates,
// the hub's anonymous policy) and what they may do (Web PubSub roles, runtime grants, the ACL
// file). The broker asks it synchronously on every PUBLISH and SUBSCRIBE, so grants and hub
// settings live in memory; the code that commits a change updates the memory in the same step.
import { randomBytes } from 'node:crypto';
import type { Acl } from '../auth/acl-file.ts';
import type { AuthResult, Authenticator, Authorizer, ConnectContext, ConnectLimits, Principal } from '../auth/auth.ts';
import type { TokenRefusal, TokenVerifier } from '../auth/jwt.ts';
import { hashPassword, verifyPassword } from '../auth/passwords.ts';
import { RoleSet } from '../auth/roles.ts';
import type { BrokerEvent, EventSink } from '../broker/events.ts';
import { EventType } from '../broker/events.ts';
import type { Clock, Logger } from '../broker/ports.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';
import { hasWildcard, literalPrefix, parseSharedFilter } from '../mqtt/topic.ts';
import { HubSettings, type EffectiveHubSettings, type HubSettingsPatch } from './hub-settings.ts';
import type { HubSettingsRecord, PermissionRecord, Store } from '../store/store.ts';

export type { EffectiveHubSettings, HubSettingsPatch } from './hub-settings.ts';

/** The two rights a grant can give (Web PubSub `Permission`). */
export const PERMISSIONS = ['sendToGroup', 'joinLeaveGroup'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Which certificate field becomes the user id of a client authenticated by its certificate. */
export type CertUserIdField = 'none' | 'cn' | 'san-dns' | 'san-email' | 'san-uri';

export interface AccessControlOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  verifier: TokenVerifier;
  /** Anonymous clients are allowed in hubs whose settings say nothing. */
  anonymousByDefault: boolean;
  /** mosquitto-style ACL rules for clients without a token; none: such clients may do everything. */
  acl?: Acl | undefined;
  /** User name → scrypt hash (the password file); none: user names and passwords are not checked. */
  passwords?: ReadonlyMap<string, string> | undefined;
  certUserId?: CertUserIdField;
}

/** One client's runtime grants, compiled. */
interface Grants {
  records: PermissionRecord[];
  roles: RoleSet;
  roleNames: string[];
}

/** Verified in place of an unknown user's hash (of a random password), made on first need. */
let unknownUserHash: string | undefined;

/** A compact JWS: three base64url parts (how a token is told from a password on TCP). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function grantRole(p: Pick<PermissionRecord, 'permission' | 'target'>): string {
  return p.target === null ? `webpubsub.${p.permission}` : `webpubsub.${p.permission}.${p.target}`;
}

/** CONNACK code of a refused token: a token that cannot be trusted at all is a bad credential, a valid one that does not apply is "not authorized". */
function tokenRefusalCode(refusal: TokenRefusal): ReasonCode {
  switch (refusal) {
    case 'expired':
    case 'not_yet_valid':
    case 'audience':
      return ReasonCode.NotAuthorized;
    case 'jwks_unavailable':
      return ReasonCode.ServerUnavailable;
    default:
      return ReasonCode.BadUserNameOrPassword;
  }
}

/** A grant named a session that does not exist, or ended before the grant was committed. */
export class SessionGoneError extends Error {
  constructor(hub: string, clientId: string) {
    super(`connection ${clientId} does not exist in hub ${hub}`);
    this.name = 'SessionGoneError';
  }
}

export class AccessControl implements Authenticator, Authorizer, EventSink {
  readonly types = [EventType.SessionEnded] as const;
  readonly #o: AccessControlOptions;
  /** hub → client id → grants. */
  readonly #grants = new Map<string, Map<string, Grants>>();
  readonly #settings: HubSettings;
  /** Grants being committed, by `hub\0clientId`; `ended` once that session ends meanwhile. */
  readonly #pendingGrants = new Map<string, { ended: boolean; count: number }>();
  #hasSession: (hub: string, clientId: string) => boolean = () => false;

  constructor(options: AccessControlOptions) {
    this.#o = { certUserId: 'none', ...options };
    this.#settings = new HubSettings(options.store, options.clock, options.anonymousByDefault);
    if (options.passwords) unknownUserHash ??= hashPassword(randomBytes(16).toString('hex')); // at start, not on a CONNECT
  }

  /**
   * Read grants and hub settings. Grants of client ids that have no session any more (a
   * non-persistent session does not outlive its process) are deleted: a grant is for a session,
   * never for whoever connects later with the same client id.
   */
  async open(hasSession: (hub: string, clientId: string) => boolean): Promise<void> {
    this.#hasSession = hasSession;
    const { permissions, hubSettings } = await this.#o.store.loadAccess();
    this.#settings.load(hubSettings);
    const orphans = new Map<string, { hub: string; subject: string }>();
    for (const p of permissions) {
      if (p.subjectKind !== 'connection') continue;
      if (!hasSession(p.hub, p.subject)) {
        orphans.set(`${p.hub}\u0000${p.subject}`, { hub: p.hub, subject: p.subject });
        continue;
      }
      this.#addToCache(p);
    }
    if (orphans.size > 0) {
      const now = this.#o.clock.now();
      await this.#o.store.transaction((tx) => {
        for (const o of orphans.values()) {
          tx.revokeAllPermissions(o.hub, 'connection', o.subject);
          tx.appendAudit({ hub: o.hub, event: 'permission_revoked', clientId: o.subject, actor: 'broker', atMs: now, detail: { all: true, why: 'session ended' } });
        }
      });
      this.#o.logger.info({ sessions: orphans.size }, 'grants of sessions that ended with the previous run revoked');
    }
  }

  /** Replace the ACL and password file rules (SIGHUP); connections made before keep their principal, and the new ACL applies to them at once. */
  setPolicy(policy: { acl: Acl | undefined; passwords: ReadonlyMap<string, string> | undefined }): void {
    this.#o.acl = policy.acl;
    this.#o.passwords = policy.passwords;
    if (policy.passwords) unknownUserHash ??= hashPassword(randomBytes(16).toString('hex'));
  }

  // ---- authentication -------------------------------------------------------------------------

  /** The settings in force for `hub` (name compared case-insensitively). */
  hubSettings(hub: string): EffectiveHubSettings {
    return this.#settings.get(hub);
  }

  /** Hubs with stored settings. */
  configuredHubs(): HubSettingsRecord[] {
    return this.#settings.configured();
  }

  /** Change a hub's settings: committed (with its audit row), then in force. */
  updateHubSettings(hub: string, patch: HubSettingsPatch, actor: string): Promise<EffectiveHubSettings> {
    return this.#settings.update(hub, patch, actor);
  }

  /**
   * Decide a WebSocket upgrade before any MQTT is spoken: a token must verify; without one, the
   * hub must allow anonymous clients, unless the CONNECT can still authenticate (password file,
   * client certificate mapping). The CONNECT is checked again in full by `authenticate`.
   */
  async checkUpgrade(hub: string, token: string | undefined): Promise<{ ok: true } | { ok: false; status: number; reason: string }> {
    if (token !== undefined) {
      const r = await this.#o.verifier.verifyClientToken(token, hub);
      if (r.ok) return { ok: true };
      // The identity provider's keys could not be fetched: the token may be good, the service is not
      return { ok: false, status: r.refusal === 'jwks_unavailable' ? 503 : 401, reason: `access token refused: ${r.reason}` };
    }
    if (this.hubSettings(hub).anonymousConnectPolicy === 'allow' || this.#o.passwords || this.#o.certUserId !== 'none') return { ok: true };
    return { ok: false, status: 401, reason: 'anonymous access is disabled for this hub: an access token is needed' };
  }

  async authenticate(ctx: ConnectContext): Promise<AuthResult> {
    const settings = this.hubSettings(ctx.hub);
    const limits: ConnectLimits = {};
    if (settings.maxKeepAliveSec !== null) limits.maxKeepAliveSec = settings.maxKeepAliveSec;
    if (settings.maxSessions !== null) limits.maxSessions = settings.maxSessions;
    const aclRights = this.#o.acl ? 'acl' : 'all';
    // A token comes with the WebSocket upgrade, or as the MQTT password (TCP; the user name is free)
    const passwordText = ctx.password?.toString('utf8');
    const token = ctx.upgradeToken ?? (passwordText !== undefined && JWT_SHAPE.test(passwordText) ? passwordText : undefined);
    if (token !== undefined) {
      const r = await this.#o.verifier.verifyClientToken(token, ctx.hub);
      if (!r.ok) return { ok: false, reasonCode: tokenRefusalCode(r.refusal), reason: `access token refused: ${r.reason}` };
      const principal: Principal = {
        userId: r.claims.userId, roles: r.claims.roles, method: 'jwt', username: ctx.username, rights: 'roles', roleSet: new RoleSet(r.claims.roles),
        claims: r.claims.claims,
      };
      return { ok: true, principal, groups: r.claims.groups, limits };
    }
    // The ACL's user sections apply only to a user name proven by its password: a user name
    // alone (any client can send one) never selects them
    if (this.#o.passwords && ctx.username !== undefined) {
      // An unknown user costs a hash check too, so timing does not tell which user names exist
      const known = this.#o.passwords.get(ctx.username);
      const stored = known ?? (unknownUserHash ??= hashPassword(randomBytes(16).toString('hex')));
      const verified = await verifyPassword(stored, passwordText ?? '');
      if (known === undefined || passwordText === undefined || !verified) {
        return { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'bad user name or password' };
      }
      return { ok: true, principal: { userId: ctx.username, roles: [], method: 'password', username: ctx.username, rights: aclRights }, limits };
    }
    const cert = ctx.clientCertificate;
    if (cert?.authorized && this.#o.certUserId !== 'none') {
      const userId = certificateUserId(cert, this.#o.certUserId!);
      if (userId === undefined) {
        return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: `client certificate has no ${this.#o.certUserId} to take the user id from` };
      }
      // The certificate's identity is the ACL user name too (mosquitto's use_identity_as_username)
      return { ok: true, principal: { userId, roles: [], method: 'certificate', username: userId, rights: aclRights }, limits };
    }
    if (settings.anonymousConnectPolicy === 'deny') {
      return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'anonymous access is disabled for this hub' };
    }
    // Unauthenticated: whatever user name it sent, the ACL treats it as anonymous
    return { ok: true, principal: { userId: undefined, roles: [], method: 'anonymous', username: undefined, rights: aclRights }, limits };
  }

  // ---- authorization (synchronous, on the message path) ----------------------------------------

  canPublish(hub: string, clientId: string, principal: Principal, topicName: string): boolean {
    switch (principal.rights) {
      case undefined:
      case 'all':
        return true;
      case 'acl':
        // The ACL file is the whole policy of these clients: its deny rules are final
        return this.#o.acl?.canPublish(principal.username, clientId, topicName) ?? false;
      case 'roles':
        return principal.roleSet?.allows('sendToGroup', topicName) === true
          || (this.#grants.get(hub)?.get(clientId)?.roles.allows('sendToGroup', topicName) ?? false);
    }
  }

  canSubscribe(hub: string, clientId: string, principal: Principal, topicFilter: string): boolean {
    if (principal.rights === undefined || principal.rights === 'all') return true;
    // A shared subscription joins the group of its inner filter
    const group = parseSharedFilter(topicFilter)?.topicFilter ?? topicFilter;
    if (principal.rights === 'acl') return this.#o.acl?.canSubscribe(principal.username, clientId, group) ?? false;
    const grants = this.#grants.get(hub)?.get(clientId);
    if (hasWildcard(group)) {
      // A pattern role matches the filter's text, where + and # are ordinary characters: it would
      // let `chat-*` subscribe `#`. A wildcard filter needs a role that covers every topic it matches.
      return coversWildcardFilter(principal.roles, group) || (grants !== undefined && coversWildcardFilter(grants.roleNames, group));
    }
    return principal.roleSet?.allows('joinLeaveGroup', group) === true || (grants?.roles.allows('joinLeaveGroup', group) ?? false);
  }

  // ---- runtime grants -----------------------------------------------------------------------------

  /**
   * Grant `permission` on `target` (null: every group) to a session; committed with its audit row,
   * then in force. Rejects with SessionGoneError (the grant revoked again) when the session ends
   * before the commit: a grant must never pass to a later session with the same client id.
   */
  async grant(hub: string, clientId: string, permission: Permission, target: string | null, actor: string): Promise<void> {
    const record: PermissionRecord = {
      hub: hub.toLowerCase(), subjectKind: 'connection', subject: clientId, permission, target, grantedBy: actor, grantedAtMs: this.#o.clock.now(),
    };
    if (!this.#hasSession(record.hub, clientId)) throw new SessionGoneError(hub, clientId);
    const k = `${record.hub}\u0000${clientId}`;
    const pending = this.#pendingGrants.get(k) ?? { ended: false, count: 0 };
    pending.count++;
    this.#pendingGrants.set(k, pending);
    try {
      await this.#o.store.transaction((tx) => {
        tx.grantPermission(record);
        tx.appendAudit({ hub: record.hub, event: 'permission_granted', clientId, actor, atMs: record.grantedAtMs, detail: { permission, target } });
      });
    } finally {
      if (--pending.count === 0 && this.#pendingGrants.get(k) === pending) this.#pendingGrants.delete(k);
    }
    if (pending.ended) {
      // The session ended while the grant was being committed: take the row back
      await this.#o.store.transaction((tx) => {
        tx.revokePermission(record.hub, 'connection', clientId, permission, target);
        tx.appendAudit({ hub: record.hub, event: 'permission_revoked', clientId, actor: 'broker', atMs: this.#o.clock.now(), detail: { permission, target, why: 'session ended' } });
      });
      throw new SessionGoneError(hub, clientId);
    }
    this.#addToCache(record);
  }

  /** Revoke one grant; committed with its audit row, then out of force. */
  async revoke(hub: string, clientId: string, permission: Permission, target: string | null, actor: string): Promise<void> {
    const key = hub.toLowerCase();
    await this.#o.store.transaction((tx) => {
      tx.revokePermission(key, 'connection', clientId, permission, target);
      tx.appendAudit({ hub: key, event: 'permission_revoked', clientId, actor, atMs: this.#o.clock.now(), detail: { permission, target } });
    });
    const g = this.#grants.get(key)?.get(clientId);
    if (g) this.#setGrants(key, clientId, g.records.filter((r) => !(r.permission === permission && r.target === target)));
  }

  /**
   * Whether a session has `permission` on `target` (null: on every group) from a grant, or from the
   * roles of the connection holding it (`principal`).
   */
  check(hub: string, clientId: string, permission: Permission, target: string | null, principal: Principal | undefined): boolean {
    const key = hub.toLowerCase();
    // A client without an ACL or roles to limit it (anonymous or password, no ACL file) may do everything
    if (principal !== undefined && (principal.rights === undefined || principal.rights === 'all')) return true;
    if (target === null) {
      const role = `webpubsub.${permission}`;
      if (principal?.rights === 'roles' && principal.roles.includes(role)) return true;
      return this.#grants.get(key)?.get(clientId)?.records.some((r) => r.permission === permission && r.target === null) ?? false;
    }
    if (principal?.rights === 'roles' && principal.roleSet?.allows(permission, target)) return true;
    return this.#grants.get(key)?.get(clientId)?.roles.allows(permission, target) ?? false;
  }

  /** The grants of a hub's sessions (all hubs when undefined). */
  listGrants(hub?: string): PermissionRecord[] {
    const out: PermissionRecord[] = [];
    for (const [h, byClient] of this.#grants) {
      if (hub !== undefined && h !== hub.toLowerCase()) continue;
      for (const g of byClient.values()) out.push(...g.records);
    }
    return out;
  }

  /** EventSink: a session that ended takes its grants with it. */
  emit(event: BrokerEvent): void {
    if (event.type !== EventType.SessionEnded) return;
    const pending = this.#pendingGrants.get(`${event.hub}\u0000${event.clientId}`);
    if (pending) pending.ended = true;
    const g = this.#grants.get(event.hub)?.get(event.clientId);
    if (!g) return;
    this.#setGrants(event.hub, event.clientId, []);
    const atMs = this.#o.clock.now();
    this.#o.store.transaction((tx) => {
      tx.revokeAllPermissions(event.hub, 'connection', event.clientId);
      tx.appendAudit({ hub: event.hub, event: 'permission_revoked', clientId: event.clientId, actor: 'broker', atMs, detail: { all: true, why: 'session ended' } });
    }).catch((err: unknown) => this.#o.logger.warn({ err, clientId: event.clientId }, 'could not delete the grants of an ended session (deleted at the next start)'));
  }

  #addToCache(p: PermissionRecord): void {
    const existing = this.#grants.get(p.hub)?.get(p.subject)?.records ?? [];
    if (existing.some((r) => r.permission === p.permission && r.target === p.target)) return;
    this.#setGrants(p.hub, p.subject, [...existing, p]);
  }

  #setGrants(hub: string, clientId: string, records: PermissionRecord[]): void {
    let byClient = this.#grants.get(hub);
    if (records.length === 0) {
      byClient?.delete(clientId);
      if (byClient?.size === 0) this.#grants.delete(hub);
      return;
    }
    if (!byClient) this.#grants.set(hub, (byClient = new Map()));
    const roleNames = records.map(grantRole);
    byClient.set(clientId, { records, roles: new RoleSet(roleNames), roleNames });
  }
}

/** The user id a certificate gives under `field`, if it has one. */
export function certificateUserId(cert: { subjectCN: string | undefined; subjectAltNames: string[] }, field: Exclude<CertUserIdField, 'none'>): string | undefined {
  if (field === 'cn') return cert.subjectCN || undefined;
  const prefix = { 'san-dns': 'DNS:', 'san-email': 'email:', 'san-uri': 'URI:' }[field];
  const san = cert.subjectAltNames.find((n) => n.startsWith(prefix));
  return san ? san.slice(prefix.length) || undefined : undefined;
}

/**
 * Whether `roles` let a client subscribe the wildcard filter `filter`: the any-group role, a role
 * naming the filter exactly, or a pattern role `webpubsub.joinLeaveGroups.{literal}**` whose
 * literal part is a prefix of the filter before its first wildcard (so every topic the filter
 * matches, matches the pattern).
 */
export function coversWildcardFilter(roles: readonly string[], filter: string): boolean {
  const fixed = literalPrefix(filter);
  for (const role of roles) {
    if (role === 'webpubsub.joinLeaveGroup' || role === `webpubsub.joinLeaveGroup.${filter}`) return true;
    if (!role.startsWith('webpubsub.joinLeaveGroups.') || !role.endsWith('**')) continue;
    const literal = role.slice('webpubsub.joinLeaveGroups.'.length, -2);
    if (!/[*?\\]/.test(literal) && fixed.startsWith(literal)) return true;
  }
  return false;
}
