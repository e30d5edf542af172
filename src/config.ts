// Typed configuration from CLI flags, environment variables and an optional JSON file (in that
// order of precedence), validated once at start-up. Nothing else reads process.env.
import { readFileSync } from 'node:fs';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';
import { isValidHubName } from './mqtt/hub-name.ts';

type Kind = 'string' | 'int' | 'bool' | 'port';

interface OptionDef {
  flag: string;
  env: string;
  kind: Kind;
  default: string | number | boolean | undefined;
  description: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

const defs = {
  host: { flag: 'host', env: 'TERN_HOST', kind: 'string', default: '127.0.0.1', description: 'address the listeners bind to' },
  httpPort: { flag: 'http-port', env: 'TERN_HTTP_PORT', kind: 'port', default: 8080, description: 'WebSocket + HTTP port (0 picks a free port)' },
  mqttPort: { flag: 'mqtt-port', env: 'TERN_MQTT_PORT', kind: 'port', default: 1883, description: 'MQTT over TCP port (0 picks a free port)' },
  mqttsPort: { flag: 'mqtts-port', env: 'TERN_MQTTS_PORT', kind: 'port', default: 8883, description: 'MQTT over TLS port, used when --tls-cert and --tls-key are set' },
  tlsCert: { flag: 'tls-cert', env: 'TERN_TLS_CERT', kind: 'string', default: undefined, description: 'PEM certificate file for mqtts (and wss on the HTTP port)' },
  tlsKey: { flag: 'tls-key', env: 'TERN_TLS_KEY', kind: 'string', default: undefined, description: 'PEM private key file for mqtts and wss' },
  tlsMinVersion: { flag: 'tls-min-version', env: 'TERN_TLS_MIN_VERSION', kind: 'string', default: 'TLSv1.2', description: 'lowest TLS version mqtts accepts (wss: uWebSockets.js always accepts TLSv1.2 and TLSv1.3)', choices: ['TLSv1.2', 'TLSv1.3'] },
  tlsCiphers: { flag: 'tls-ciphers', env: 'TERN_TLS_CIPHERS', kind: 'string', default: undefined, description: 'OpenSSL cipher list for TLS 1.2 on mqtts and wss (default: Node\'s default list, tls.DEFAULT_CIPHERS); TLS 1.3 suites are not affected' },
  tlsCa: { flag: 'tls-ca', env: 'TERN_TLS_CA', kind: 'string', default: undefined, description: 'PEM CA bundle: mqtts and the client-certificate wss listener (--wss-port) then request a client certificate and check it against these CAs (a certificate that does not verify is still accepted, marked unverified, unless --tls-require-client-cert)' },
  tlsRequireClientCert: { flag: 'tls-require-client-cert', env: 'TERN_TLS_REQUIRE_CLIENT_CERT', kind: 'bool', default: false, description: 'refuse at the TLS handshake (mqtts and --wss-port) a client without a certificate that verifies against --tls-ca (needs --tls-ca)' },
  wssPort: { flag: 'wss-port', env: 'TERN_WSS_PORT', kind: 'port', default: 8443, description: 'MQTT over WebSocket on Node\'s TLS, which sees client certificates (uWebSockets.js does not); opened only when --tls-ca, --tls-cert and --tls-key are all set' },
  tlsCertUserId: { flag: 'tls-cert-user-id', env: 'TERN_TLS_CERT_USER_ID', kind: 'string', default: 'none', description: 'which part of a verified client certificate becomes the user id: none, cn (subject common name), san-dns, san-email or san-uri (the first such subject alternative name)', choices: ['none', 'cn', 'san-dns', 'san-email', 'san-uri'] },
  clientCertHeader: { flag: 'client-cert-header', env: 'TERN_CLIENT_CERT_HEADER', kind: 'string', default: undefined, description: 'request header (e.g. x-forwarded-client-cert, x-arr-clientcert) from which the WebSocket endpoints on the HTTP port take the client certificate (URL-encoded PEM, base64 DER or PEM); set it only behind a TLS terminator that verifies client certificates and overwrites this header' },
  metricsToken: { flag: 'metrics-token', env: 'TERN_METRICS_TOKEN', kind: 'string', default: undefined, description: 'secret that GET /metrics requires as "Authorization: Bearer <secret>" (unset: /metrics is open to whoever reaches the HTTP port)' },
  dataDir: { flag: 'data-dir', env: 'TERN_DATA_DIR', kind: 'string', default: './data', description: 'directory for local state (the embedded PostgreSQL cluster lives in <data-dir>/pg)' },
  store: { flag: 'store', env: 'TERN_STORE', kind: 'string', default: 'postgres', description: 'where durable state lives: postgres (DATABASE_URL, or an embedded server in <data-dir>/pg) or memory (lost at exit)', choices: ['postgres', 'memory'] },
  databaseUrl: { flag: 'database-url', env: 'DATABASE_URL', kind: 'string', default: undefined, description: 'PostgreSQL connection URL; unset: start an embedded PostgreSQL in <data-dir>/pg' },
  defaultHub: { flag: 'default-hub', env: 'TERN_DEFAULT_HUB', kind: 'string', default: 'default', description: 'hub of TCP clients and of the /mqtt WebSocket path' },
  nodeId: { flag: 'node-id', env: 'TERN_NODE_ID', kind: 'string', default: 'node-1', description: 'name of this broker node' },
  logBufferBytes: { flag: 'log-buffer-bytes', env: 'TERN_LOG_BUFFER_BYTES', kind: 'int', default: 8388608, min: 65536, max: 1073741824, description: 'log lines waiting for stdout, in bytes: lines are written without blocking and, while stdout takes none (a stalled log reader), dropped over this and counted (tern_log_lines_dropped_total)' },
  logLevel: { flag: 'log-level', env: 'TERN_LOG_LEVEL', kind: 'string', default: 'info', description: 'log level', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  allowAnonymous: { flag: 'allow-anonymous', env: 'TERN_ALLOW_ANONYMOUS', kind: 'bool', default: undefined, description: 'accept clients without credentials in hubs whose settings say nothing (default: yes while bound to loopback, no elsewhere)' },
  allowedOrigins: { flag: 'allowed-origins', env: 'TERN_ALLOWED_ORIGINS', kind: 'string', default: '', description: 'comma-separated browser origins (scheme://host[:port], exact match) whose WebSocket upgrades are served while anonymous access is on; * allows any; upgrades without an Origin header (non-browser clients) are always served, others get 403' },
  accessKey: { flag: 'access-key', env: 'TERN_ACCESS_KEY', kind: 'string', default: undefined, description: 'primary access key (signs client and REST tokens); unset: generated on first start into <data-dir>/access-keys.json' },
  secondaryAccessKey: { flag: 'secondary-access-key', env: 'TERN_SECONDARY_ACCESS_KEY', kind: 'string', default: undefined, description: 'secondary access key (tokens signed with either key are accepted, so one can be rotated at a time); unset: from <data-dir>/access-keys.json' },
  publicEndpoint: { flag: 'public-endpoint', env: 'TERN_PUBLIC_ENDPOINT', kind: 'string', default: undefined, description: 'http(s)://host[:port] clients and SDKs use to reach this broker, printed in the connection string (default: the listening address)' },
  aclFile: { flag: 'acl-file', env: 'TERN_ACL_FILE', kind: 'string', default: undefined, description: 'mosquitto-style ACL file (topic/pattern read|write|readwrite|deny lines, user sections, %c and %u) for clients without an access token' },
  passwordFile: { flag: 'password-file', env: 'TERN_PASSWORD_FILE', kind: 'string', default: undefined, description: 'user:hash lines made with `tern passwd`; when set, a CONNECT with a user name and password must match one' },
  jwksUrl: { flag: 'jwks-url', env: 'TERN_JWKS_URL', kind: 'string', default: undefined, description: 'JWKS URL of your identity provider: client tokens signed RS256/ES256 with its keys are accepted (keys cached)' },
  tokenPublicKeys: { flag: 'token-public-keys', env: 'TERN_TOKEN_PUBLIC_KEYS', kind: 'string', default: undefined, description: 'PEM file of public keys (RS256/ES256) whose client tokens are accepted' },
  tokenIssuer: { flag: 'token-issuer', env: 'TERN_TOKEN_ISSUER', kind: 'string', default: undefined, description: 'required iss claim of RS256/ES256 client tokens' },
  allowUwsFallback: { flag: 'allow-uws-fallback', env: 'TERN_ALLOW_UWS_FALLBACK', kind: 'bool', default: false, description: 'start even if uWebSockets.js fell back to its slow pure-JS server' },
  maxPacketSize: { flag: 'max-packet-size', env: 'TERN_MAX_PACKET_SIZE', kind: 'int', default: 1048576, min: 64, max: 268435455, description: 'largest inbound MQTT packet in bytes (Maximum Packet Size)' },
  receiveMaximum: { flag: 'receive-maximum', env: 'TERN_RECEIVE_MAXIMUM', kind: 'int', default: 65535, min: 1, max: 65535, description: 'unacknowledged QoS 1/2 publishes a client may send (Receive Maximum)' },
  maxInflight: { flag: 'max-inflight', env: 'TERN_MAX_INFLIGHT', kind: 'int', default: 1024, min: 1, max: 65535, description: 'QoS 1/2 messages in flight to one client' },
  topicAliasMaximum: { flag: 'topic-alias-maximum', env: 'TERN_TOPIC_ALIAS_MAXIMUM', kind: 'int', default: 64, min: 0, max: 65535, description: 'topic aliases a client may use (Topic Alias Maximum)' },
  maximumQos: { flag: 'maximum-qos', env: 'TERN_MAXIMUM_QOS', kind: 'int', default: 2, min: 0, max: 2, description: 'highest QoS accepted (Maximum QoS)' },
  retainAvailable: { flag: 'retain-available', env: 'TERN_RETAIN_AVAILABLE', kind: 'bool', default: true, description: 'support retained messages' },
  wildcardSubscriptions: { flag: 'wildcard-subscriptions', env: 'TERN_WILDCARD_SUBSCRIPTIONS', kind: 'bool', default: true, description: 'allow + and # in subscriptions' },
  subscriptionIdentifiers: { flag: 'subscription-identifiers', env: 'TERN_SUBSCRIPTION_IDENTIFIERS', kind: 'bool', default: true, description: 'support subscription identifiers' },
  sharedSubscriptions: { flag: 'shared-subscriptions', env: 'TERN_SHARED_SUBSCRIPTIONS', kind: 'bool', default: true, description: 'support $share/{group}/{filter}' },
  maxKeepAlive: { flag: 'max-keep-alive', env: 'TERN_MAX_KEEP_ALIVE', kind: 'int', default: 0, min: 0, max: 65535, description: 'largest keep alive in seconds, sent as Server Keep Alive (0: no limit)' },
  maxSessionExpiry: { flag: 'max-session-expiry', env: 'TERN_MAX_SESSION_EXPIRY', kind: 'int', default: 4294967295, min: 0, max: 4294967295, description: 'largest Session Expiry Interval in seconds' },
  connectTimeout: { flag: 'connect-timeout', env: 'TERN_CONNECT_TIMEOUT', kind: 'int', default: 10, min: 1, max: 3600, description: 'seconds a new connection has to send CONNECT' },
  maxQueuedBytes: { flag: 'max-queued-bytes', env: 'TERN_MAX_QUEUED_BYTES', kind: 'int', default: 67108864, min: 1024, max: 1099511627776, description: 'payload bytes queued per session before new messages are dropped' },
  commitHoldMs: { flag: 'commit-hold-ms', env: 'TERN_COMMIT_HOLD_MS', kind: 'int', default: 5, min: 0, max: 1000, description: 'hold a group commit up to this long for the PUBACKs of QoS 1 messages sent ahead of it, which cancel their rows (0: never)' },
  dbCommitTimeoutMs: { flag: 'db-commit-timeout-ms', env: 'TERN_DB_COMMIT_TIMEOUT_MS', kind: 'int', default: 10000, min: 100, max: 600000, description: 'a group commit still unanswered after this long is abandoned: its PostgreSQL connection is destroyed, its units fail (5.0: reason code 0x83, 3.1.1: the acknowledgement stays held) and the store counts as unhealthy until a commit succeeds' },
  shutdownTimeoutMs: { flag: 'shutdown-timeout-ms', env: 'TERN_SHUTDOWN_TIMEOUT_MS', kind: 'int', default: 15000, min: 100, max: 600000, description: 'on SIGTERM/SIGINT, exit (code 1) if the orderly shutdown has not finished after this long, e.g. because PostgreSQL does not answer' },
  maxBatchRows: { flag: 'max-batch-rows', env: 'TERN_MAX_BATCH_ROWS', kind: 'int', default: 10000, min: 1, max: 1000000, description: 'a PostgreSQL group commit takes no more units of work once it changes this many rows; later ones wait for the next commit' },
  maxBatchBytes: { flag: 'max-batch-bytes', env: 'TERN_MAX_BATCH_BYTES', kind: 'int', default: 16777216, min: 1024, max: 536870912, description: 'a PostgreSQL group commit takes no more units of work once it carries this many payload and topic bytes; later ones wait for the next commit' },
  auditRetentionDays: { flag: 'audit-retention-days', env: 'TERN_AUDIT_RETENTION_DAYS', kind: 'int', default: 90, min: 0, max: 36500, description: 'audit rows older than this many days are deleted (hourly, in batches of 5000; 0: keep them forever)' },
  maxAuditDetailBytes: { flag: 'max-audit-detail-bytes', env: 'TERN_MAX_AUDIT_DETAIL_BYTES', kind: 'int', default: 4096, min: 256, max: 1048576, description: 'an audit row detail larger than this (JSON bytes) is stored truncated, as {"truncated":true,"bytes":<full size>,"head":"<start of it>"}' },
  maxStoreBacklogUnits: { flag: 'max-store-backlog-units', env: 'TERN_MAX_STORE_BACKLOG_UNITS', kind: 'int', default: 50000, min: 1, max: 100000000, description: 'units of work waiting for PostgreSQL above which publishers stop being read (TCP) or have their acknowledgements held (WebSocket) until half that is left' },
  maxStoreBacklogBytes: { flag: 'max-store-backlog-bytes', env: 'TERN_MAX_STORE_BACKLOG_BYTES', kind: 'int', default: 67108864, min: 1024, max: 68719476736, description: 'payload bytes waiting for PostgreSQL above which publishers stop being read (TCP) or have their acknowledgements held (WebSocket) until half that is left' },
  maxQueuedMessages: { flag: 'max-queued-messages', env: 'TERN_MAX_QUEUED_MESSAGES', kind: 'int', default: 100000, min: 1, max: 100000000, description: 'messages queued per session before new ones are dropped' },
  maxTopicLength: { flag: 'max-topic-length', env: 'TERN_MAX_TOPIC_LENGTH', kind: 'int', default: 1024, min: 1, max: 65535, description: 'largest topic name in UTF-8 bytes; a longer one is refused (5.0: reason code 0x90)' },
  maxTopicFilterLength: { flag: 'max-topic-filter-length', env: 'TERN_MAX_TOPIC_FILTER_LENGTH', kind: 'int', default: 1024, min: 1, max: 65535, description: 'largest topic filter in UTF-8 bytes, $share/{group}/ included; a longer one is refused (SUBACK 0x8F, 3.1.1: 0x80)' },
  maxTopicLevels: { flag: 'max-topic-levels', env: 'TERN_MAX_TOPIC_LEVELS', kind: 'int', default: 128, min: 1, max: 65535, description: 'most levels in a topic name or filter' },
  maxClientIdLength: { flag: 'max-client-id-length', env: 'TERN_MAX_CLIENT_ID_LENGTH', kind: 'int', default: 256, min: 23, max: 65535, description: 'largest client id in UTF-8 bytes; a longer one is refused (CONNACK 0x85, 3.1.1: 2)' },
  wsMaxBackpressure: { flag: 'ws-max-backpressure', env: 'TERN_WS_MAX_BACKPRESSURE', kind: 'int', default: 67108864, min: 65536, max: 1073741824, description: 'bytes buffered for one WebSocket client before a send would be dropped; that client is disconnected instead' },
  maxHubs: { flag: 'max-hubs', env: 'TERN_MAX_HUBS', kind: 'int', default: 1000, min: 1, max: 1000000, description: 'hubs that may exist; a CONNECT that would create another is refused (CONNACK 0x97, 3.1.1: 3)' },
  maxSessions: { flag: 'max-sessions', env: 'TERN_MAX_SESSIONS', kind: 'int', default: 1000000, min: 1, max: 100000000, description: 'sessions in all hubs; a CONNECT that would create another is refused (CONNACK 0x97, 3.1.1: 3)' },
  maxSubscriptionsPerSession: { flag: 'max-subscriptions-per-session', env: 'TERN_MAX_SUBSCRIPTIONS_PER_SESSION', kind: 'int', default: 1000, min: 1, max: 10000000, description: 'subscriptions one session may hold; more fail per filter (SUBACK 0x97, 3.1.1: 0x80)' },
  maxRetainedMessages: { flag: 'max-retained-messages', env: 'TERN_MAX_RETAINED_MESSAGES', kind: 'int', default: 100000, min: 0, max: 100000000, description: 'retained messages per hub; a retained PUBLISH that would add one more fails (5.0: 0x97, 3.1.1: close); deleting is always allowed' },
  maxRetainedBytes: { flag: 'max-retained-bytes', env: 'TERN_MAX_RETAINED_BYTES', kind: 'int', default: 268435456, min: 0, max: 1099511627776, description: 'retained payload bytes per hub; a retained PUBLISH that would exceed it fails (5.0: 0x97, 3.1.1: close)' },
  maxUnackedPublishes: { flag: 'max-unacked-publishes', env: 'TERN_MAX_UNACKED_PUBLISHES', kind: 'int', default: 65535, min: 1, max: 1000000, description: 'unacknowledged QoS 1/2 publishes a 3.1.1 client may send (it has no Receive Maximum); one more closes the connection' },
  maxConnections: { flag: 'max-connections', env: 'TERN_MAX_CONNECTIONS', kind: 'int', default: 100000, min: 1, max: 10000000, description: 'client connections in total; more are refused at accept (TCP: closed, WebSocket: HTTP 503)' },
  maxConnectionsPerAddress: { flag: 'max-connections-per-address', env: 'TERN_MAX_CONNECTIONS_PER_ADDRESS', kind: 'int', default: 1000, min: 1, max: 10000000, description: 'client connections from one remote address; more are refused at accept' },
  connectionRate: { flag: 'connection-rate', env: 'TERN_CONNECTION_RATE', kind: 'int', default: 200, min: 1, max: 1000000, description: 'new connections per second one remote address may open on average (token bucket); more are refused at accept' },
  connectionBurst: { flag: 'connection-burst', env: 'TERN_CONNECTION_BURST', kind: 'int', default: 1000, min: 1, max: 1000000, description: 'new connections one remote address may open at once (token bucket size)' },
  maxPreConnectBytes: { flag: 'max-pre-connect-bytes', env: 'TERN_MAX_PRE_CONNECT_BYTES', kind: 'int', default: 2097152, min: 128, max: 1073741824, description: 'bytes a client may send before its CONNECT is decided, CONNECT included (never less than --max-packet-size); more closes the connection' },
} as const satisfies Record<string, OptionDef>;

type Defs = typeof defs;
type ValueOf<K extends Kind> = K extends 'string' ? string : K extends 'bool' ? boolean : number;

/** The validated configuration. Options without a default may be undefined. */
export type Config = {
  [K in keyof Defs]: Defs[K]['default'] extends undefined ? ValueOf<Defs[K]['kind']> | undefined : ValueOf<Defs[K]['kind']>;
} & { configFile: string | undefined };

/** Bad configuration; `problems` lists every invalid value. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `--help` text listing every option. */
export function helpText(): string {
  const lines = ['Usage: tern [options]', '', 'Options (flag / environment variable, default):'];
  for (const d of Object.values(defs) as OptionDef[]) {
    const dflt = d.default === undefined ? '' : ` (default: ${String(d.default)})`;
    const arg = d.kind === 'bool' ? '[=true|false]' : d.kind === 'string' ? ' <value>' : ' <n>';
    lines.push(`  --${d.flag}${arg}  /  ${d.env}`, `      ${d.description}${dflt}`);
  }
  lines.push('  --config <file>  /  TERN_CONFIG', '      JSON file with any of the options above, keyed by flag name');
  lines.push('  --help', '      print this text and exit');
  return lines.join('\n');
}

function convert(d: OptionDef, raw: unknown, source: string, problems: string[]): string | number | boolean | undefined {
  const where = `${source} ${source === 'flag' ? `--${d.flag}` : source === 'env' ? d.env : `"${d.flag}"`}`;
  if (d.kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    const s = String(raw).toLowerCase();
    if (['1', 'true', 'yes', 'on', ''].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    problems.push(`${where}: expected true or false, got "${String(raw)}"`);
    return undefined;
  }
  if (d.kind === 'string') {
    const s = String(raw);
    if (d.choices && !d.choices.includes(s)) {
      problems.push(`${where}: expected one of ${d.choices.join(', ')}, got "${s}"`);
      return undefined;
    }
    return s;
  }
  const s = String(raw).trim();
  const n = /^-?\d+$/.test(s) ? Number(s) : Number.NaN;
  const [min, max] = d.kind === 'port' ? [0, 65535] : [d.min ?? 0, d.max ?? Number.MAX_SAFE_INTEGER];
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    problems.push(`${where}: expected an integer from ${min} to ${max}, got "${String(raw)}"`);
    return undefined;
  }
  return n;
}

/** Whether clients without credentials are accepted by default: as configured, else only while bound to loopback. */
export function anonymousByDefault(c: Config): boolean {
  return c.allowAnonymous ?? isLoopbackHost(c.host);
}

/** The entries of --allowed-origins. */
export function originList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * Whether the listeners' host is loopback: an IPv4 literal in 127.0.0.0/8, the IPv6 literal ::1 (any
 * notation), or the name "localhost". Any other name is not, whatever it starts with ("127.evil.com").
 */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  return isIPv6(host) && loopbackV6.check(host, 'ipv6');
}
const loopbackV6 = new BlockList();
loopbackV6.addAddress('::1', 'ipv6');

/** Read and validate configuration. Throws ConfigError listing every problem. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config | 'help' {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, config: { type: 'string' } };
  for (const d of Object.values(defs) as OptionDef[]) options[d.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  // Bare boolean flags (--allow-anonymous) mean true
  const normalized = argv.map((a) => {
    const d = (Object.values(defs) as OptionDef[]).find((x) => `--${x.flag}` === a);
    return d?.kind === 'bool' ? `${a}=true` : a;
  });
  const problems: string[] = [];
  const parsed = parseArgs({ args: normalized, options, strict: false, allowPositionals: true, tokens: true });
  values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help'] === true) return 'help';
  for (const t of parsed.tokens ?? []) {
    if (t.kind === 'positional') problems.push(`unexpected argument "${t.value}"`);
    else if (t.kind === 'option' && !(t.name in options)) problems.push(`unknown option ${t.rawName}`);
    else if (t.kind === 'option' && options[t.name]!.type === 'string' && t.value === undefined) problems.push(`option ${t.rawName} needs a value`);
  }
  const configFile = (values['config'] as string | undefined) ?? env['TERN_CONFIG'];
  let file: Record<string, unknown> = {};
  if (configFile) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(configFile, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      file = parsed as Record<string, unknown>;
      const known = new Set((Object.values(defs) as OptionDef[]).map((d) => d.flag));
      for (const k of Object.keys(file)) if (!known.has(k)) problems.push(`config file: unknown option "${k}"`);
    } catch (e) {
      problems.push(`config file ${configFile}: ${(e as Error).message}`);
    }
  }
  const out: Record<string, unknown> = { configFile };
  for (const [key, d] of Object.entries(defs) as Array<[string, OptionDef]>) {
    const fromFlag = values[d.flag];
    const fromEnv = env[d.env];
    if (fromFlag !== undefined) out[key] = convert(d, fromFlag, 'flag', problems);
    else if (fromEnv !== undefined && fromEnv !== '') out[key] = convert(d, fromEnv, 'env', problems);
    else if (file[d.flag] !== undefined) out[key] = convert(d, file[d.flag], 'config file', problems);
    else out[key] = d.default;
  }
  const c = out as Config;
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) problems.push('--tls-cert and --tls-key must be given together');
  if (c.tlsRequireClientCert && c.tlsCa === undefined) problems.push('--tls-require-client-cert needs --tls-ca (the CAs client certificates must verify against)');
  if (c.tlsCa !== undefined && c.tlsCert === undefined && c.tlsKey === undefined) problems.push('--tls-ca needs --tls-cert and --tls-key (client certificates are requested by the TLS listeners only)');
  if (c.tlsCa !== undefined) {
    let ca: string | undefined;
    try {
      ca = readFileSync(c.tlsCa, 'utf8');
    } catch (e) {
      problems.push(`--tls-ca ${c.tlsCa}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) problems.push(`--tls-ca ${c.tlsCa}: no PEM certificate in it`);
  }
  if (c.clientCertHeader !== undefined && !/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(c.clientCertHeader)) problems.push(`--client-cert-header "${c.clientCertHeader}": expected an HTTP header name`);
  // (sent in an Authorization header: visible ASCII only, no spaces)
  if (c.metricsToken !== undefined && !/^[\x21-\x7e]+$/.test(c.metricsToken)) problems.push('--metrics-token: expected a non-empty secret of visible ASCII characters without spaces');
  if (c.clientCertHeader !== undefined) out['clientCertHeader'] = c.clientCertHeader.toLowerCase();
  if (c.databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(c.databaseUrl)) {
    problems.push('DATABASE_URL: expected a postgres:// or postgresql:// URL');
  }
  if (!isValidHubName(c.defaultHub)) {
    problems.push(`--default-hub "${c.defaultHub}": a hub name is a letter then up to 127 letters, digits or _\`,.[]`);
  }
  for (const origin of originList(c.allowedOrigins)) {
    let canonical: string | undefined;
    try { canonical = new URL(origin).origin; } catch { /* reported below */ }
    if (origin !== '*' && canonical !== origin) problems.push(`--allowed-origins: "${origin}" is not an origin: expected * or scheme://host[:port] as a browser sends it (lowercase, no path, no default port)`);
  }
  if (c.publicEndpoint !== undefined) {
    let u: URL | undefined;
    try { u = new URL(c.publicEndpoint); } catch { /* reported below */ }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || (u.pathname !== '/' && u.pathname !== '')) {
      problems.push(`--public-endpoint "${c.publicEndpoint}": expected http(s)://host[:port]`);
    }
  }
  if (c.jwksUrl !== undefined && !/^https?:\/\//.test(c.jwksUrl)) problems.push(`--jwks-url "${c.jwksUrl}": expected an http(s) URL`);
  if (problems.length > 0) throw new ConfigError(problems);
  return c;
}
