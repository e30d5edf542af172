// Composition root: config → logger → store → auth → broker → listeners; signals.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AuditLog } from './audit/audit-log.ts';
import { AccessControl, type CertUserIdField } from './access/access-control.ts';
import { registerApi } from './api/app.ts';
import { parseAcl, type Acl } from './auth/acl-file.ts';
import { TokenVerifier } from './auth/jwt.ts';
import { connectionString, loadOrCreateAccessKeys, type AccessKeys } from './auth/keys.ts';
import { parsePasswordFile } from './auth/passwords.ts';
import { runSubcommand } from './cli/subcommands.ts';
import { Broker } from './broker/broker.ts';
import { EventBus } from './broker/events.ts';
import { defaultBrokerOptions, type BrokerOptions } from './broker/options.ts';
import { systemClock } from './broker/ports.ts';
import { anonymousByDefault, ConfigError, helpText, isLoopbackHost, loadConfig, originList, type Config } from './config.ts';
import { EventType } from './broker/events.ts';
import { isValidHubName } from './mqtt/hub-name.ts';
import { createLogger, LogSink, type AppLogger } from './observability/logger.ts';
import { Metrics } from './observability/metrics.ts';
import { MemoryStore } from './store/memory-store.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './postgres/embedded.ts';
import { PgStore } from './store/pg/pg-store.ts';
import type { Store } from './store/store.ts';
import { registerHealthRoute, registerProbeRoutes } from './server/health.ts';
import { registerMetricsRoute } from './server/metrics-route.ts';
import { createHttpServer } from './server/http-server.ts';
import { carriesToken, mqttWsEndpoints } from './transport/mqtt-ws.ts';
import { listenNodeWss } from './transport/node-ws.ts';
import { listenTcp, type Listener } from './transport/tcp.ts';
import { chooseUws, loadUwsFallback, shareUwsBuild, UwsLoadError, uwsCandidates, type UwsBuild } from './transport/uws-loader.ts';
import { mountWsEndpoints } from './transport/ws-endpoint.ts';

function brokerOptions(c: Config): BrokerOptions {
  return {
    ...defaultBrokerOptions,
    nodeId: c.nodeId,
    defaultHub: c.defaultHub,
    maxPacketBytes: c.maxPacketSize,
    receiveMaximum: c.receiveMaximum,
    maxInflight: c.maxInflight,
    topicAliasMaximum: c.topicAliasMaximum,
    maximumQos: c.maximumQos as 0 | 1 | 2,
    retainAvailable: c.retainAvailable,
    wildcardSubscriptionAvailable: c.wildcardSubscriptions,
    subscriptionIdentifiersAvailable: c.subscriptionIdentifiers,
    sharedSubscriptionAvailable: c.sharedSubscriptions,
    maxKeepAliveSec: c.maxKeepAlive,
    maxSessionExpirySec: c.maxSessionExpiry,
    connectTimeoutMs: c.connectTimeout * 1000,
    maxQueuedMessages: c.maxQueuedMessages,
    maxQueuedBytes: c.maxQueuedBytes,
    maxTopicBytes: c.maxTopicLength,
    maxTopicFilterBytes: c.maxTopicFilterLength,
    maxTopicLevels: c.maxTopicLevels,
    maxClientIdBytes: c.maxClientIdLength,
    maxHubs: c.maxHubs,
    maxSessions: c.maxSessions,
    maxSubscriptionsPerSession: c.maxSubscriptionsPerSession,
    maxRetainedMessages: c.maxRetainedMessages,
    maxRetainedBytes: c.maxRetainedBytes,
    maxInflightInV3: c.maxUnackedPublishes,
    maxConnections: c.maxConnections,
    maxConnectionsPerAddress: c.maxConnectionsPerAddress,
    connectionRatePerSec: c.connectionRate,
    connectionBurst: c.connectionBurst,
    maxPreConnectBytes: Math.max(c.maxPreConnectBytes, c.maxPacketSize), // a CONNECT may be that large
    maxStoreBacklogUnits: c.maxStoreBacklogUnits,
    maxStoreBacklogBytes: c.maxStoreBacklogBytes,
  };
}

/** The ACL and password files, read at start and again on SIGHUP. */
function readPolicyFiles(config: Config): { acl: Acl | undefined; passwords: Map<string, string> | undefined } {
  const acl = config.aclFile === undefined ? undefined : parseAcl(readFileSync(config.aclFile, 'utf8'));
  const passwords = config.passwordFile === undefined ? undefined : parsePasswordFile(readFileSync(config.passwordFile, 'utf8'));
  return { acl, passwords };
}

/** Where SDKs reach this broker: --public-endpoint, else the listening address (a wildcard address as loopback). */
function publicEndpoint(config: Config, port: number, tls: boolean): string {
  if (config.publicEndpoint !== undefined) return config.publicEndpoint;
  const wildcard = config.host === '0.0.0.0' || config.host === '::';
  const host = wildcard ? '127.0.0.1' : config.host.includes(':') ? `[${config.host}]` : config.host;
  return `${tls ? 'https' : 'http'}://${host}:${port}`;
}

/** The process's log lines (stdout), once the configuration is read. */
let logSink: LogSink | undefined;
/** How long an exit waits for buffered log lines (stdout may be stuck). */
const LOG_FLUSH_AT_EXIT_MS = 1000;

let exiting = false;

/** Exit once the buffered log lines are written, or the wait for them is over; the first call decides the code. */
function exitAfterLogs(code: number): void {
  if (exiting) return;
  exiting = true;
  // (flushed() never rejects)
  void (logSink?.flushed(LOG_FLUSH_AT_EXIT_MS) ?? Promise.resolve()).then(() => process.exit(code));
}

/** Exit now, after a bug: the fatal line is written synchronously if stdout takes it at once, nothing is waited for. */
function exitOnCrash(logger: AppLogger, err: unknown, what: string): void {
  logSink?.directFromNow();
  logger.fatal({ err }, what);
  process.exit(1);
}

async function main(): Promise<void> {
  const sub = process.argv[2];
  if (sub !== undefined && !sub.startsWith('-')) {
    process.exitCode = await runSubcommand(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });
    return;
  }
  let config: Config | 'help';
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`tern: ${e.message}\n\nRun with --help to list the options.\n`);
      process.exit(2);
    }
    throw e;
  }
  if (config === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  const sink = (logSink = new LogSink({ maxBufferBytes: config.logBufferBytes }));
  const logger = createLogger(config.logLevel, sink);
  // Known failures (a lost database connection, a refused row, a client's bad packet) are handled
  // where they happen. Anything reaching here is a bug whose damage is unknown: log it and exit
  // non-zero. Durable state is in PostgreSQL, so a supervisor's restart is safe.
  process.on('unhandledRejection', (err) => exitOnCrash(logger, err, 'unhandled rejection; exiting'));
  process.on('uncaughtException', (err) => exitOnCrash(logger, err, 'uncaught exception; exiting'));
  let uws: UwsBuild;
  try {
    uws = chooseUws(uwsCandidates);
  } catch (err) {
    if (!(err instanceof UwsLoadError)) throw err;
    if (!config.allowUwsFallback) {
      logger.fatal({ failures: err.failures }, 'uWebSockets.js could not load a native binary for this platform; refusing to run on its slow fallback (set --allow-uws-fallback to override; the README lists the supported Node versions and platforms)');
      exitAfterLogs(1);
      return;
    }
    uws = loadUwsFallback();
    logger.warn({ failures: err.failures }, 'uWebSockets.js runs on its slow pure-JS fallback (--allow-uws-fallback): HTTP only, no WebSocket endpoints');
  }
  shareUwsBuild(uws);
  logger.info({ uws: uws.name, version: uws.version, native: uws.native, skipped: uws.skipped }, 'uWebSockets.js build loaded');
  // Prometheus metrics (GET /metrics): fed by broker events, group commits and, at scrape, the broker and store
  const metrics = new Metrics({ logLinesDropped: () => sink.dropped });
  let embedded: EmbeddedDatabase | undefined;
  let store: Store;
  if (config.store === 'memory') {
    logger.warn({}, 'state is kept in memory only (--store memory): sessions and messages are lost when the broker stops');
    store = new MemoryStore();
  } else {
    let url = config.databaseUrl;
    if (!url) {
      embedded = await startEmbeddedPostgres({ dataDir: path.resolve(config.dataDir), logger });
      url = embedded.url;
    }
    store = new PgStore({ url, logger, commitHoldMs: config.commitHoldMs, commitTimeoutMs: config.dbCommitTimeoutMs,
      maxBatchRows: config.maxBatchRows, maxBatchBytes: config.maxBatchBytes,
      auditRetentionDays: config.auditRetentionDays, maxAuditDetailBytes: config.maxAuditDetailBytes,
      onCommit: metrics.observeCommit,
    });
  }
  try {
    await store.open();
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  const options = brokerOptions(config);
  // Access keys (generated into the data directory on first start), tokens, policy files
  let keys: AccessKeys;
  let policy: ReturnType<typeof readPolicyFiles>;
  let tokenPublicKeys: string[] | undefined;
  try {
    const loaded = loadOrCreateAccessKeys(path.resolve(config.dataDir), { primary: config.accessKey, secondary: config.secondaryAccessKey });
    keys = loaded.keys;
    if (loaded.created) logger.info({ file: loaded.file }, 'access keys generated');
    policy = readPolicyFiles(config);
    tokenPublicKeys = config.tokenPublicKeys === undefined ? undefined : [readFileSync(config.tokenPublicKeys, 'utf8')];
  } catch (err) {
    await store.close();
    await embedded?.stop();
    throw err;
  }
  const verifier = new TokenVerifier({
    keys: () => keys, jwksUrl: config.jwksUrl, publicKeysPem: tokenPublicKeys, issuer: config.tokenIssuer,
  });
  const access = new AccessControl({
    store, clock: systemClock, logger, verifier, anonymousByDefault: anonymousByDefault(config),
    acl: policy.acl, passwords: policy.passwords, certUserId: config.tlsCertUserId as CertUserIdField,
  });
  // Subscribers of broker events: one line each (metrics and webhooks join the audit log here)
  const events = new EventBus(logger);
  events.subscribe(new AuditLog(store, systemClock, logger));
  events.subscribe(access);
  events.subscribe(metrics);
  const broker = new Broker({ options, store, clock: systemClock, logger, events, authenticator: access, authorizer: access });
  try {
    await broker.start();
    await access.open((hub, clientId) => broker.hasSession(hub, clientId));
  } catch (err) {
    await store.close();
    await embedded?.stop();
    throw err;
  }

  const onConnection = broker.accept.bind(broker);
  const admit = broker.admit.bind(broker);
  const listeners: Listener[] = [];
  const tlsFiles = config.tlsCert && config.tlsKey
    ? { certFile: config.tlsCert, keyFile: config.tlsKey, ...(config.tlsCiphers === undefined ? {} : { ciphers: config.tlsCiphers }) }
    : undefined;
  if (tlsFiles && config.tlsMinVersion !== 'TLSv1.2') {
    logger.warn({ tlsMinVersion: config.tlsMinVersion }, 'wss cannot enforce --tls-min-version: uWebSockets.js accepts TLSv1.2 and TLSv1.3');
  }
  const http = await createHttpServer({ uws: uws.uws, native: uws.native, host: config.host, port: config.httpPort, tls: tlsFiles, logger });
  registerHealthRoute(http.fastify, () => broker.connections.size);
  // Probes and /api/health on the root instance, before the /api scope (whose routes need a token)
  let listening = false;
  registerProbeRoutes(http.fastify, () => ({ store: store.healthy, listeners: listening }));
  metrics.watch({
    connectionTransports: function* () { for (const c of broker.connections) yield c.transport; },
    sessionCount: () => broker.sessionCount,
    queuedDeliveries: () => broker.totals().queued.count,
    stats: () => broker.stats,
    store,
  });
  registerMetricsRoute(http.fastify, metrics, config.metricsToken);
  let endpoint = config.publicEndpoint ?? ''; // set once the port is known (before any request is served)
  await registerApi(http.fastify, {
    verifier, access, isValidHub: isValidHubName, broker,
    signingKey: () => keys.primary, publicEndpoint: () => endpoint, maxMessageBytes: options.maxPacketBytes,
    audit: (row) => {
      store.transaction((tx) => tx.appendAudit({ ...row, atMs: systemClock.now() }))
        .catch((err: unknown) => logger.warn({ err, event: row.event }, 'could not write audit event'));
    },
    hasSession: (hub, clientId) => broker.hasSession(hub, clientId),
    principalOf: (hub, clientId) => broker.principalOf(hub, clientId),
    store, now: () => systemClock.now(),
    // Group-commit figures exist only on PostgreSQL (the memory store commits nothing)
    commitFigures: () => (store.kind === 'memory' ? undefined : metrics.commits.figures()),
  });
  const transportName = tlsFiles ? 'wss' : 'ws';
  if (!http.app) logger.warn({}, 'no WebSocket endpoints: the pure-JS uWebSockets.js fallback cannot upgrade connections');
  const mqttEndpoints = mqttWsEndpoints({
    defaultHub: options.defaultHub, maxPayloadBytes: options.maxPacketBytes + 1024, onConnection, admit,
    transport: tlsFiles ? 'wss' : 'ws', isValidHub: isValidHubName, maxBackpressureBytes: config.wsMaxBackpressure,
    onSendDropped: (remoteAddress, bufferedBytes) => logger.warn({ remoteAddress, bufferedBytes }, 'WebSocket send buffer limit exceeded; connection closed'),
    checkCredentials: async (hub, token, req) => {
      const r = await access.checkUpgrade(hub, token);
      if (!r.ok) {
        logger.info({ hub, remoteAddress: req.remoteAddress, reason: r.reason }, 'websocket upgrade refused');
        events.emit({ type: EventType.UpgradeRefused, hub: hub.toLowerCase(), remoteAddress: req.remoteAddress, status: r.status, reason: r.reason, transport: transportName });
      }
      return r;
    },
  });
  const wsMountPolicy = {
    // A web page the local user opens must not use an anonymous broker: browsers' upgrades need a listed Origin
    // (always: a hub's settings may allow anonymous clients whatever the deployment default)
    allowedOrigins: new Set(originList(config.allowedOrigins)),
    // An upgrade with a token is decided by the token, from any origin (as on Azure)
    originCheckExempt: carriesToken,
    onOriginRefused: (origin: string, url: string) => logger.warn({ origin, url }, 'websocket upgrade refused: origin not allowed'),
    onError: (err: unknown, url: string) => logger.error({ err, url }, 'websocket endpoint failed'),
  };
  const wsEndpoints = http.app && mountWsEndpoints(http.app, mqttEndpoints, {
    ...wsMountPolicy,
    // Behind a TLS terminator that verifies client certificates and sets this header (opt-in)
    ...(config.clientCertHeader === undefined ? {} : { clientCertificateHeader: config.clientCertHeader }),
  });
  const ws: Listener = {
    port: await http.listen(),
    close: async () => {
      await http.close();
      wsEndpoints?.closeAll();
    },
  };
  listeners.push(ws);
  const tcp = await listenTcp({ host: config.host, port: config.mqttPort, hub: options.defaultHub, onConnection, admit });
  listeners.push(tcp);
  let mqttsPort: number | undefined;
  let wssPort: number | undefined;
  if (tlsFiles) {
    // Client certificates (--tls-ca): requested; refused at the handshake only with --tls-require-client-cert
    const clientCerts = config.tlsCa === undefined ? {} : { ca: readFileSync(config.tlsCa), requestCert: true, rejectUnauthorized: config.tlsRequireClientCert };
    const tlsOptions = {
      cert: readFileSync(tlsFiles.certFile), key: readFileSync(tlsFiles.keyFile),
      minVersion: config.tlsMinVersion as 'TLSv1.2' | 'TLSv1.3', ...(config.tlsCiphers === undefined ? {} : { ciphers: config.tlsCiphers }),
      ...clientCerts,
    };
    const mqtts = await listenTcp({ host: config.host, port: config.mqttsPort, hub: options.defaultHub, onConnection, admit, tls: tlsOptions });
    listeners.push(mqtts);
    mqttsPort = mqtts.port;
    if (config.tlsCa !== undefined) {
      // uWebSockets.js does not expose the peer certificate: these WebSocket clients are served by Node's TLS
      const wss = await listenNodeWss({
        host: config.host, port: config.wssPort, tls: tlsOptions, endpoints: mqttEndpoints, admit,
        mount: wsMountPolicy,
      });
      listeners.push(wss);
      wssPort = wss.port;
    }
  }
  listening = true;
  endpoint = publicEndpoint(config, ws.port, tlsFiles !== undefined);
  logger.info({
    connectionString: connectionString(endpoint, keys.primary),
    anonymousByDefault: anonymousByDefault(config), loopback: isLoopbackHost(config.host),
  }, 'connection string for the Web PubSub SDKs (WebPubSubServiceClient)');
  const scheme = tlsFiles ? 'wss' : 'ws';
  logger.info({
    host: config.host, httpPort: ws.port, mqttPort: tcp.port, mqttsPort, wssPort, store: store.kind, nodeId: options.nodeId,
    mqttUrl: `mqtt://${config.host}:${tcp.port}`, wsUrl: `${scheme}://${config.host}:${ws.port}/mqtt`,
  }, 'tern listening');
  process.on('SIGHUP', () => {
    // Reload the access keys (rotation) and the ACL and password files; a bad file keeps the old rules
    try {
      const nextKeys = loadOrCreateAccessKeys(path.resolve(config.dataDir), { primary: config.accessKey, secondary: config.secondaryAccessKey }).keys;
      const nextPolicy = readPolicyFiles(config);
      // Both read: only now does either take effect
      keys = nextKeys;
      access.setPolicy(nextPolicy);
      logger.info({}, 'access keys and policy files reloaded (SIGHUP)');
    } catch (err) {
      logger.error({ err }, 'reload failed (SIGHUP): the previous keys and policy stay in force');
    }
  });

  let stopping = false;
  const shutdownTimeoutMs = config.shutdownTimeoutMs;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    listening = false;
    logger.info({ signal }, 'shutting down');
    // Every step below may wait on PostgreSQL: bound the whole shutdown
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: shutdownTimeoutMs }, 'shutdown deadline passed; exiting without finishing');
      exitAfterLogs(1);
    }, shutdownTimeoutMs);
    // Stop accepting and send MQTT 5 clients DISCONNECT 0x8B before the listeners drop every socket
    await broker.shutdown();
    await new Promise((r) => setTimeout(r, 100));
    for (const l of listeners) await l.close();
    await store.close();
    await embedded?.stop();
    clearTimeout(deadline);
    logger.info({}, 'stopped');
    exitAfterLogs(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`tern: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  exitAfterLogs(1);
});
