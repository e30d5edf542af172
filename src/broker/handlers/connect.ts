// CONNECT: validation, client id rules, authentication, session open and CONNACK (MQTT 5 §3.1, §3.2).
import { randomBytes } from 'node:crypto';
import type { ConnackPacket, ConnectPacket } from '../../mqtt/packet.ts';
import { ReasonCode, type ConnackReasonCode, toV3ConnackReturnCode } from '../../mqtt/reason-code.ts';
import { OutboundAliases } from '../../mqtt/session-state.ts';
import { hasWildcard, parseSharedFilter } from '../../mqtt/topic.ts';
import { validateConnect, validateSubscriptionFilter } from '../../mqtt/validate.ts';
import type { Connecting } from '../context.ts';
import { EventType } from '../events.ts';
import type { AuthResult } from '../ports.ts';
import type { Session } from '../session.ts';

/** Refuse the connection with a CONNACK carrying `rc`, then close [MQTT-3.2.2-6]. */
function refuse(conn: Connecting, rc: ConnackReasonCode, reason?: string): void {
  const { engine } = conn;
  const packet: ConnackPacket = conn.version === 5
    ? { type: 'connack', sessionPresent: false, reasonCode: rc, properties: reason ? { reasonString: reason } : undefined }
    : { type: 'connack', sessionPresent: false, reasonCode: toV3ConnackReturnCode(rc) };
  conn.send(packet);
  engine.logger.info({ clientId: conn.clientId, reasonCode: rc, reason, remoteAddress: conn.remoteAddress }, 'connection refused');
  engine.events.emit({
    type: EventType.ConnectRefused, hub: engine.hubs.key(conn.hubName), clientId: conn.clientId || undefined, reasonCode: rc,
    remoteAddress: conn.remoteAddress, reason, transport: conn.transport, protocolVersion: conn.version,
  });
  conn.end(undefined);
}

/** CONNECT flag rules that the decoder lets through. Returns the CONNACK reason code on failure. */
function checkConnectFlags(p: ConnectPacket): ReasonCode | undefined {
  // [MQTT-3.1.2-12] will QoS 3 is a Malformed Packet (mqtt-packet decodes it as 3)
  if (p.will && (p.will.qos as number) > 2) return ReasonCode.MalformedPacket;
  // [v3.1.1 MQTT-3.1.2-22] 3.1.1 forbids a password without a user name (5.0 allows it)
  if (p.protocolVersion === 4 && p.password !== undefined && p.username === undefined) return ReasonCode.MalformedPacket;
  return undefined;
}

/** CONNECT from a new connection. */
export function handleConnect(conn: Connecting, packet: ConnectPacket): void {
  const { engine } = conn;
  conn.version = packet.protocolVersion;
  const opts = engine.options;
  const invalid = checkConnectFlags(packet) ?? validateConnect(packet, {
    maximumQos: opts.maximumQos, retainAvailable: opts.retainAvailable, maxClientIdBytes: opts.maxClientIdBytes, topic: opts,
  });
  if (invalid !== undefined) {
    // [v3.1.1 MQTT-3.1.4-1] 3.1.1 has no CONNACK code for a bad will topic: close without one
    if (invalid === ReasonCode.MalformedPacket || invalid === ReasonCode.ProtocolError || (invalid === ReasonCode.TopicNameInvalid && conn.version === 4)) {
      // [MQTT-4.13.1-1] malformed CONNECT: CONNACK (5.0) with the code, then close
      if (conn.version === 5) refuse(conn, invalid);
      else conn.end(undefined);
      return;
    }
    refuse(conn, invalid as ConnackReasonCode);
    return;
  }
  let clientId = packet.clientId;
  let assigned: string | undefined;
  if (clientId.length === 0) {
    // [MQTT-3.1.3-8] 3.1.1: an empty client id needs clean session 1, else identifier rejected
    if (conn.version === 4 && !packet.cleanStart) {
      refuse(conn, ReasonCode.ClientIdentifierNotValid);
      return;
    }
    // [MQTT-3.1.3-6] [MQTT-3.2.2-16] assign a unique id (returned to 5.0 clients)
    clientId = `tern-${randomBytes(9).toString('base64url')}`;
    assigned = clientId;
  }
  conn.clientId = clientId;
  const props = packet.properties;
  if (conn.version === 5 && props?.authenticationMethod !== undefined) {
    // [MQTT-4.12.0-1] no enhanced authentication method is configured
    refuse(conn, ReasonCode.BadAuthenticationMethod, `authentication method ${props.authenticationMethod} is not supported`);
    return;
  }
  let result: AuthResult | Promise<AuthResult>;
  try {
    result = engine.authenticator.authenticate({
      hub: engine.hubs.key(conn.hubName), clientId, transport: conn.transport, remoteAddress: conn.remoteAddress,
      username: packet.username, password: packet.password, upgradeToken: conn.upgradeToken,
      ...(conn.clientCertificate ? { clientCertificate: conn.clientCertificate } : {}), connect: packet,
    });
  } catch (err) {
    engine.logger.error({ err, clientId }, 'authenticator failed');
    refuse(conn, ReasonCode.ServerUnavailable);
    return;
  }
  const proceed = (r: AuthResult): void => {
    if (!conn.isOpen) return;
    if (!r.ok) {
      refuse(conn, r.reasonCode as ConnackReasonCode, r.reason);
      return;
    }
    accept(conn, packet, r, assigned);
  };
  if (result instanceof Promise) {
    let value: AuthResult | undefined;
    const decided = result.then((r) => { value = r; });
    conn.after(decided, () => proceed(value!), (err) => {
      engine.logger.error({ err, clientId }, 'authenticator failed');
      refuse(conn, ReasonCode.ServerUnavailable);
    });
    return;
  }
  proceed(result);
}

/**
 * Open the session under a per-client-id lock: a CONNECT for a client id whose session is still
 * being opened (its commit in flight) waits for that open to finish, then takes over.
 */
function accept(conn: Connecting, packet: ConnectPacket, auth: Admitted, assigned: string | undefined): void {
  const { engine } = conn;
  const { hubs, options } = engine;
  const existing = hubs.find(conn.hubName);
  // Hubs and sessions are created only here, once the CONNECT is accepted, within their caps
  if (!existing && hubs.size >= options.maxHubs) {
    refuse(conn, ReasonCode.QuotaExceeded, `hub limit (${options.maxHubs}) reached`);
    return;
  }
  if (!existing?.sessions.has(conn.clientId) && hubs.sessionCount >= options.maxSessions) {
    refuse(conn, ReasonCode.QuotaExceeded, `session limit (${options.maxSessions}) reached`);
    return;
  }
  const hubLimit = auth.limits?.maxSessions;
  if (hubLimit !== undefined && existing && !existing.sessions.has(conn.clientId) && existing.sessions.size >= hubLimit) {
    refuse(conn, ReasonCode.QuotaExceeded, `session limit of hub ${existing.name} (${hubLimit}) reached`);
    return;
  }
  const hub = existing ?? hubs.get(conn.hubName);
  const previous = hub.opening.get(conn.clientId);
  if (previous) {
    conn.after(previous, () => accept(conn, packet, auth, assigned));
    return;
  }
  const opened = openSession(conn, packet, auth, assigned);
  if (!opened) return;
  hub.opening.set(conn.clientId, opened);
  const release = (): void => {
    if (hub.opening.get(conn.clientId) === opened) hub.opening.delete(conn.clientId);
  };
  opened.then(release, release);
}

/** The authenticator's acceptance. */
type Admitted = Extract<AuthResult, { ok: true }>;

/**
 * Subscribe a new session to the groups its token names (Web PubSub `webpubsub.group`): default
 * options at QoS 1, without asking the authorizer (the token's issuer granted them). A name that
 * is not a valid filter here is skipped and logged.
 */
function joinGroups(conn: Connecting, session: Session, groups: readonly string[] | undefined): void {
  if (!groups || groups.length === 0) return;
  const { engine } = conn;
  for (const topicFilter of groups) {
    if (session.subscriptions.size >= engine.options.maxSubscriptionsPerSession) {
      engine.logger.warn({ clientId: conn.clientId, limit: engine.options.maxSubscriptionsPerSession }, 'token groups exceed the subscription limit; the rest are not joined');
      return;
    }
    if (validateSubscriptionFilter(topicFilter, false, engine.options) !== undefined || parseSharedFilter(topicFilter)) {
      engine.logger.warn({ clientId: conn.clientId, group: topicFilter }, 'token group is not a valid topic filter here; not joined');
      continue;
    }
    if (!engine.options.wildcardSubscriptionAvailable && hasWildcard(topicFilter)) {
      engine.logger.warn({ clientId: conn.clientId, group: topicFilter }, 'token group is a wildcard filter and wildcard subscriptions are off; not joined');
      continue;
    }
    const qos = Math.min(1, engine.options.maximumQos) as 0 | 1;
    engine.subscriptions.subscribe(session, { topicFilter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 }, undefined)
      .catch((err: unknown) => engine.logger.error({ err, clientId: conn.clientId, group: topicFilter }, 'could not store a token group subscription'));
  }
}

/** The CONNACK properties a 5.0 client is told (MQTT 5 §3.2.2.3). */
function connackProperties(conn: Connecting, assigned: string | undefined, serverKeepAlive: number | undefined, expiryCapped: number | undefined): NonNullable<ConnackPacket['properties']> {
  const opts = conn.engine.options;
  const p: NonNullable<ConnackPacket['properties']> = {};
  if (assigned) p.assignedClientIdentifier = assigned;
  if (serverKeepAlive !== undefined) p.serverKeepAlive = serverKeepAlive;
  if (expiryCapped !== undefined) p.sessionExpiryInterval = expiryCapped;
  if (opts.receiveMaximum < 65535) p.receiveMaximum = opts.receiveMaximum;
  if (opts.maximumQos < 2) p.maximumQoS = opts.maximumQos;
  if (!opts.retainAvailable) p.retainAvailable = false;
  p.maximumPacketSize = opts.maxPacketBytes;
  if (opts.topicAliasMaximum > 0) p.topicAliasMaximum = opts.topicAliasMaximum;
  if (!opts.wildcardSubscriptionAvailable) p.wildcardSubscriptionAvailable = false;
  if (!opts.subscriptionIdentifiersAvailable) p.subscriptionIdentifiersAvailable = false;
  if (!opts.sharedSubscriptionAvailable) p.sharedSubscriptionAvailable = false;
  return p;
}

function openSession(conn: Connecting, packet: ConnectPacket, auth: Admitted, assigned: string | undefined): Promise<void> | undefined {
  const { engine } = conn;
  const opts = engine.options;
  const props = packet.properties;
  const { principal } = auth;
  // Keep alive: the broker's (or the hub's) maximum wins, and 5.0 clients are told [MQTT-3.2.2-21]
  const maxKeepAliveSec = auth.limits?.maxKeepAliveSec ?? opts.maxKeepAliveSec;
  let keepAliveSec = packet.keepAliveSec;
  let serverKeepAlive: number | undefined;
  if (maxKeepAliveSec > 0 && (keepAliveSec === 0 || keepAliveSec > maxKeepAliveSec)) {
    if (conn.version === 5) {
      keepAliveSec = maxKeepAliveSec;
      serverKeepAlive = keepAliveSec;
    }
  }
  let expiry: number;
  let expiryCapped: number | undefined;
  if (conn.version === 5) {
    expiry = props?.sessionExpiryInterval ?? 0; // [MQTT-3.1.2-?] absent means 0
    if (expiry > opts.maxSessionExpirySec) expiry = expiryCapped = opts.maxSessionExpirySec;
  } else {
    expiry = packet.cleanStart ? 0 : Math.min(0xffffffff, opts.maxSessionExpirySec);
  }
  const v5 = conn.version === 5;
  conn.configure({
    keepAliveSec,
    sendQuota: v5 ? Math.min(props?.receiveMaximum ?? 65535, opts.maxInflight) : opts.maxInflight,
    clientMaxPacketBytes: v5 && props?.maximumPacketSize ? props.maximumPacketSize : Number.POSITIVE_INFINITY,
    outboundAliases: v5 && props?.topicAliasMaximum ? new OutboundAliases(props.topicAliasMaximum) : undefined,
    problemInformation: !(v5 && props?.requestProblemInformation === false),
  });
  const { session, sessionPresent, committed, undo } = engine.sessions.open({
    hubName: conn.hubName, clientId: conn.clientId, remoteAddress: conn.remoteAddress, packet, expiryIntervalSec: expiry, userId: principal.userId,
  });
  const finish = (): void => {
    if (!conn.isOpen) {
      // The client left before its CONNACK: the session opened for it must not stay for ever
      engine.sessions.settleUnattached(session, conn.remoteAddress);
      return;
    }
    conn.attach(session, principal);
    // Groups of the client's token are joined for a new session only (a resumed one keeps its own)
    if (!sessionPresent || packet.cleanStart) joinGroups(conn, session, auth.groups);
    const connack: ConnackPacket = { type: 'connack', sessionPresent: sessionPresent && !packet.cleanStart, reasonCode: 0 };
    if (conn.version === 5) connack.properties = connackProperties(conn, assigned, serverKeepAlive, expiryCapped);
    conn.send(connack);
    engine.events.emit({
      type: EventType.Connect, hub: session.hub.name, clientId: conn.clientId, remoteAddress: conn.remoteAddress, userId: principal.userId,
      method: principal.method, transport: conn.transport, protocolVersion: conn.version,
      cleanStart: packet.cleanStart, sessionPresent: connack.sessionPresent, username: packet.username,
    });
    engine.logger.debug({ clientId: conn.clientId, hub: session.hub.name, sessionPresent: connack.sessionPresent, protocolVersion: conn.version }, 'client connected');
    if (sessionPresent) session.outbox.resume();
  };
  conn.after(committed, finish, (err) => {
    engine.logger.error({ err, clientId: conn.clientId }, 'could not store session');
    undo();
    // A hub this CONNECT created and nothing else uses goes again: a refused CONNECT leaves no hub
    const hub = engine.hubs.find(conn.hubName);
    if (hub && hub.sessions.size === 0 && hub.retained.size === 0 && hub.tree.size === 0 && hub.retainedPendingCount === 0
      && [...hub.opening.keys()].every((id) => id === conn.clientId)) {
      engine.hubs.delete(hub);
    }
    if (conn.isOpen) refuse(conn, ReasonCode.ServerUnavailable);
  }, true); // the session must be settled even when its client has gone before the commit
  return committed?.catch(() => undefined);
}
