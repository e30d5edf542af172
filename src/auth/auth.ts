// Authentication and authorization ports. The broker asks an Authenticator at CONNECT and an
// Authorizer in the PUBLISH and SUBSCRIBE pipelines. The defaults allow everything.
import type { ConnectPacket } from '../mqtt/packet.ts';
import { ReasonCode } from '../mqtt/reason-code.ts';

/** What the broker knows about a client when it authenticates. */
export interface ConnectContext {
  hub: string;
  clientId: string;
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  remoteAddress: string;
  username: string | undefined;
  password: Buffer | undefined;
  /** Credentials that came with the WebSocket upgrade (query access_token or Authorization header). */
  upgradeToken: string | undefined;
  /** The TLS client certificate, when one was requested and sent (verified or not: see `authorized`). */
  clientCertificate?: ClientCertificate;
  connect: ConnectPacket;
}

/** A client certificate as the transport saw it (same shape as the transport's PeerCertificate). */
export interface ClientCertificate {
  /** SHA-1 of the DER bytes, lowercase hex. */
  thumbprint: string;
  pem: string;
  subjectCN: string | undefined;
  /** "DNS:a.example", "email:x@y", "URI:..." as Node prints them. */
  subjectAltNames: string[];
  /** The chain verified against the configured CA. */
  authorized: boolean;
}

/** What a verified client access token says (Web PubSub claims, spec §3.2). */
export interface TokenClaims {
  /** `sub`. */
  userId: string | undefined;
  /** `role`, as a string or an array. */
  roles: string[];
  /** `webpubsub.group` and `group`: groups joined (MQTT: subscriptions made) at connect. */
  groups: string[];
  /** Every other claim, as the upstream `connect` event carries them (`Record<string, string[]>`). */
  claims: Record<string, string[]>;
}

/** A client's identity and rights once authenticated. */
export interface Principal {
  userId: string | undefined;
  roles: string[];
  /** How the client was authenticated, for the audit log ("anonymous", "jwt", "password", "certificate"). */
  method: string;
  /** The MQTT user name, for ACL rules. */
  username?: string | undefined;
  /**
   * How the authorizer decides for this client: `all` (everything allowed: anonymous or password
   * clients without an ACL file), `roles` (Web PubSub roles and grants), `acl` (the ACL file and grants).
   */
  rights?: 'all' | 'roles' | 'acl';
  /** The roles compiled once at authentication (`rights: 'roles'`). */
  roleSet?: RoleChecker;
  /** The token's other claims, kept for the upstream `connect` event (`Record<string, string[]>`). */
  claims?: Record<string, string[]>;
}

/** Web PubSub rights on a group (spec §3.3); the MQTT mapping is in the Authorizer. */
export interface RoleChecker {
  allows(right: 'sendToGroup' | 'joinLeaveGroup', group: string): boolean;
}

/** Per-hub limits the authenticator found for this CONNECT (hub settings). */
export interface ConnectLimits {
  /** Largest keep alive in seconds (told to 5.0 clients as Server Keep Alive). */
  maxKeepAliveSec?: number;
  /** Sessions the hub may hold. */
  maxSessions?: number;
}

export type AuthResult =
  | {
    ok: true;
    principal: Principal;
    /** Groups to join at connect: subscriptions with default options at QoS 1, made only for a new session. */
    groups?: string[];
    limits?: ConnectLimits;
  }
  | { ok: false; reasonCode: ReasonCode; reason?: string };

export interface Authenticator {
  authenticate(ctx: ConnectContext): Promise<AuthResult> | AuthResult;
}

export interface Authorizer {
  canPublish(hub: string, clientId: string, principal: Principal, topicName: string): boolean;
  canSubscribe(hub: string, clientId: string, principal: Principal, topicFilter: string): boolean;
}

const anonymous: AuthResult = Object.freeze({ ok: true, principal: Object.freeze({ userId: undefined, roles: [], method: 'anonymous' }) });

/** Accepts every client as anonymous. */
export const allowAnonymous: Authenticator = {
  authenticate: () => anonymous,
};

/** Allows every publish and subscribe. */
export const allowAll: Authorizer = {
  canPublish: () => true,
  canSubscribe: () => true,
};

/** Refuses every client (used when anonymous access is off and no credentials scheme is set). */
export const denyAll: Authenticator = {
  authenticate: () => ({ ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'anonymous access is disabled' }),
};
