// Configuration: defaults, precedence (flag > env > config file), validation that reports every
// problem at once, and --help.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { anonymousByDefault, type Config, ConfigError, helpText, loadConfig } from '../../src/config.ts';

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'tern-config-test-')); });
after(() => { rmSync(dir, { recursive: true, force: true }); });

let fileCounter = 0;
/** Write a config file and return its path. */
function configFile(content: unknown): string {
  const path = join(dir, `config-${++fileCounter}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function load(argv: string[], env: Record<string, string> = {}): Config {
  const c = loadConfig(argv, env);
  assert.notEqual(c, 'help');
  return c as Config;
}

/** The problems of the ConfigError that `fn` throws. */
function problemsOf(fn: () => unknown): string[] {
  let problems: string[] | undefined;
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    problems = e.problems;
    return true;
  });
  return problems!;
}

/** Assert each pattern matches exactly one problem and no problem is left unmatched. */
function assertProblems(problems: string[], patterns: RegExp[]): void {
  for (const re of patterns) {
    assert.equal(problems.filter((p) => re.test(p)).length, 1, `one problem matching ${re}; got:\n  ${problems.join('\n  ')}`);
  }
  assert.equal(problems.length, patterns.length, `exactly ${patterns.length} problems; got:\n  ${problems.join('\n  ')}`);
}

/** Every flag with its environment variable, as documented in README/--help. */
const flags: Array<[string, string]> = [
  ['host', 'TERN_HOST'], ['http-port', 'TERN_HTTP_PORT'], ['mqtt-port', 'TERN_MQTT_PORT'], ['mqtts-port', 'TERN_MQTTS_PORT'],
  ['tls-cert', 'TERN_TLS_CERT'], ['tls-key', 'TERN_TLS_KEY'], ['tls-min-version', 'TERN_TLS_MIN_VERSION'], ['tls-ciphers', 'TERN_TLS_CIPHERS'], ['tls-ca', 'TERN_TLS_CA'], ['tls-require-client-cert', 'TERN_TLS_REQUIRE_CLIENT_CERT'], ['wss-port', 'TERN_WSS_PORT'], ['tls-cert-user-id', 'TERN_TLS_CERT_USER_ID'], ['client-cert-header', 'TERN_CLIENT_CERT_HEADER'], ['metrics-token', 'TERN_METRICS_TOKEN'],
  ['data-dir', 'TERN_DATA_DIR'], ['database-url', 'DATABASE_URL'],
  ['default-hub', 'TERN_DEFAULT_HUB'], ['node-id', 'TERN_NODE_ID'], ['log-level', 'TERN_LOG_LEVEL'], ['log-buffer-bytes', 'TERN_LOG_BUFFER_BYTES'],
  ['allow-anonymous', 'TERN_ALLOW_ANONYMOUS'], ['access-key', 'TERN_ACCESS_KEY'], ['secondary-access-key', 'TERN_SECONDARY_ACCESS_KEY'],
  ['public-endpoint', 'TERN_PUBLIC_ENDPOINT'], ['acl-file', 'TERN_ACL_FILE'], ['password-file', 'TERN_PASSWORD_FILE'], ['jwks-url', 'TERN_JWKS_URL'],
  ['token-public-keys', 'TERN_TOKEN_PUBLIC_KEYS'], ['token-issuer', 'TERN_TOKEN_ISSUER'], ['allowed-origins', 'TERN_ALLOWED_ORIGINS'], ['allow-uws-fallback', 'TERN_ALLOW_UWS_FALLBACK'],
  ['max-packet-size', 'TERN_MAX_PACKET_SIZE'], ['receive-maximum', 'TERN_RECEIVE_MAXIMUM'], ['max-inflight', 'TERN_MAX_INFLIGHT'],
  ['topic-alias-maximum', 'TERN_TOPIC_ALIAS_MAXIMUM'], ['maximum-qos', 'TERN_MAXIMUM_QOS'],
  ['retain-available', 'TERN_RETAIN_AVAILABLE'], ['wildcard-subscriptions', 'TERN_WILDCARD_SUBSCRIPTIONS'],
  ['subscription-identifiers', 'TERN_SUBSCRIPTION_IDENTIFIERS'], ['shared-subscriptions', 'TERN_SHARED_SUBSCRIPTIONS'],
  ['max-keep-alive', 'TERN_MAX_KEEP_ALIVE'], ['max-session-expiry', 'TERN_MAX_SESSION_EXPIRY'],
  ['connect-timeout', 'TERN_CONNECT_TIMEOUT'], ['max-queued-messages', 'TERN_MAX_QUEUED_MESSAGES'],
  ['max-queued-bytes', 'TERN_MAX_QUEUED_BYTES'], ['commit-hold-ms', 'TERN_COMMIT_HOLD_MS'], ['store', 'TERN_STORE'],
  ['db-commit-timeout-ms', 'TERN_DB_COMMIT_TIMEOUT_MS'], ['shutdown-timeout-ms', 'TERN_SHUTDOWN_TIMEOUT_MS'],
  ['max-batch-rows', 'TERN_MAX_BATCH_ROWS'], ['max-batch-bytes', 'TERN_MAX_BATCH_BYTES'],
  ['audit-retention-days', 'TERN_AUDIT_RETENTION_DAYS'], ['max-audit-detail-bytes', 'TERN_MAX_AUDIT_DETAIL_BYTES'],
  ['max-store-backlog-units', 'TERN_MAX_STORE_BACKLOG_UNITS'], ['max-store-backlog-bytes', 'TERN_MAX_STORE_BACKLOG_BYTES'],
  ['config', 'TERN_CONFIG'],
  ['max-topic-length', 'TERN_MAX_TOPIC_LENGTH'], ['max-topic-filter-length', 'TERN_MAX_TOPIC_FILTER_LENGTH'],
  ['max-topic-levels', 'TERN_MAX_TOPIC_LEVELS'], ['max-client-id-length', 'TERN_MAX_CLIENT_ID_LENGTH'],
  ['ws-max-backpressure', 'TERN_WS_MAX_BACKPRESSURE'], ['max-hubs', 'TERN_MAX_HUBS'], ['max-sessions', 'TERN_MAX_SESSIONS'],
  ['max-subscriptions-per-session', 'TERN_MAX_SUBSCRIPTIONS_PER_SESSION'], ['max-retained-messages', 'TERN_MAX_RETAINED_MESSAGES'],
  ['max-retained-bytes', 'TERN_MAX_RETAINED_BYTES'], ['max-unacked-publishes', 'TERN_MAX_UNACKED_PUBLISHES'],
  ['max-connections', 'TERN_MAX_CONNECTIONS'], ['max-connections-per-address', 'TERN_MAX_CONNECTIONS_PER_ADDRESS'],
  ['connection-rate', 'TERN_CONNECTION_RATE'], ['connection-burst', 'TERN_CONNECTION_BURST'], ['max-pre-connect-bytes', 'TERN_MAX_PRE_CONNECT_BYTES'],
];

describe('loadConfig', () => {
  test('defaults with no flags, env or file', () => {
    const expected: Config = {
      configFile: undefined,
      host: '127.0.0.1', httpPort: 8080, mqttPort: 1883, mqttsPort: 8883, tlsCert: undefined, tlsKey: undefined, tlsMinVersion: 'TLSv1.2', tlsCiphers: undefined,
      tlsCa: undefined, tlsRequireClientCert: false, wssPort: 8443, tlsCertUserId: 'none', clientCertHeader: undefined, metricsToken: undefined,
      dataDir: './data', store: 'postgres', databaseUrl: undefined, defaultHub: 'default', nodeId: 'node-1', logBufferBytes: 8388608, logLevel: 'info',
      allowAnonymous: undefined, allowedOrigins: '', allowUwsFallback: false,
      accessKey: undefined, secondaryAccessKey: undefined, publicEndpoint: undefined, aclFile: undefined, passwordFile: undefined,
      jwksUrl: undefined, tokenPublicKeys: undefined, tokenIssuer: undefined, maxPacketSize: 1048576, receiveMaximum: 65535,
      maxInflight: 1024, topicAliasMaximum: 64, maximumQos: 2, retainAvailable: true, wildcardSubscriptions: true,
      subscriptionIdentifiers: true, sharedSubscriptions: true, maxKeepAlive: 0, maxSessionExpiry: 4294967295,
      connectTimeout: 10, commitHoldMs: 5, maxQueuedMessages: 100000, maxQueuedBytes: 67108864,
      maxTopicLength: 1024, maxTopicFilterLength: 1024, maxTopicLevels: 128, maxClientIdLength: 256,
      wsMaxBackpressure: 67108864,
      maxHubs: 1000, maxSessions: 1000000, maxSubscriptionsPerSession: 1000, maxRetainedMessages: 100000, maxRetainedBytes: 268435456,
      maxUnackedPublishes: 65535,
      maxConnections: 100000, maxConnectionsPerAddress: 1000, connectionRate: 200, connectionBurst: 1000, maxPreConnectBytes: 2097152,
      dbCommitTimeoutMs: 10000, shutdownTimeoutMs: 15000,
      maxBatchRows: 10000, maxBatchBytes: 16777216,
      auditRetentionDays: 90, maxAuditDetailBytes: 4096,
      maxStoreBacklogUnits: 50000, maxStoreBacklogBytes: 67108864,
    };
    assert.deepEqual(load([], {}), expected);
  });

  test('precedence: flag > env > config file > default', () => {
    const file = configFile({ 'mqtt-port': 1000, 'http-port': 1001, 'max-inflight': 5, 'node-id': 'from-file' });
    const c = load(
      ['--mqtt-port', '3000', '--config', file],
      { TERN_MQTT_PORT: '2000', TERN_HTTP_PORT: '2001', TERN_NODE_ID: '' },
    );
    assert.equal(c.mqttPort, 3000, 'flag beats env and file');
    assert.equal(c.httpPort, 2001, 'env beats file');
    assert.equal(c.maxInflight, 5, 'file beats default');
    assert.equal(c.nodeId, 'from-file', 'an empty env var counts as unset');
    assert.equal(c.mqttsPort, 8883, 'default');
    assert.equal(c.configFile, file);
  });

  test('--config beats TERN_CONFIG; TERN_CONFIG is used alone', () => {
    const a = configFile({ 'node-id': 'a' });
    const b = configFile({ 'node-id': 'b' });
    assert.equal(load(['--config', a], { TERN_CONFIG: b }).nodeId, 'a');
    assert.equal(load([], { TERN_CONFIG: b }).nodeId, 'b');
  });

  test('typed values: JSON numbers and booleans in the file, strings in env and flags', () => {
    const file = configFile({ 'retain-available': false, 'maximum-qos': 1, 'log-level': 'debug' });
    const c = load(['--config', file, '--wildcard-subscriptions=no', '--max-keep-alive', ' 30 '], { TERN_SHARED_SUBSCRIPTIONS: 'off' });
    assert.equal(c.retainAvailable, false);
    assert.equal(c.maximumQos, 1);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.wildcardSubscriptions, false);
    assert.equal(c.sharedSubscriptions, false);
    assert.equal(c.maxKeepAlive, 30);
  });

  test('boolean spellings; a bare boolean flag means true', () => {
    for (const t of ['1', 'true', 'TRUE', 'yes', 'on']) assert.equal(load([`--retain-available=${t}`]).retainAvailable, true, t);
    for (const f of ['0', 'false', 'No', 'off']) assert.equal(load([`--retain-available=${f}`]).retainAvailable, false, f);
    assert.equal(load(['--allow-anonymous']).allowAnonymous, true);
    assert.equal(load(['--allow-anonymous=false']).allowAnonymous, false);
  });

  test('port 0 is allowed (pick a free port)', () => {
    assert.equal(load(['--mqtt-port', '0']).mqttPort, 0);
  });

  test('anonymous clients are accepted by default only while bound to loopback, unless set either way', () => {
    assert.equal(anonymousByDefault(load(['--host', '0.0.0.0'])), false);
    assert.equal(anonymousByDefault(load(['--host', '0.0.0.0', '--allow-anonymous'])), true);
    assert.equal(anonymousByDefault(load(['--host', '127.0.0.1'], { TERN_ALLOW_ANONYMOUS: 'false' })), false);
    for (const host of ['localhost', '::1', '127.0.0.2']) assert.equal(anonymousByDefault(load(['--host', host])), true, host);
  });

  test('--public-endpoint must be an http(s) origin', () => {
    assert.equal(load(['--public-endpoint', 'https://broker.example.com']).publicEndpoint, 'https://broker.example.com');
    assertProblems(problemsOf(() => loadConfig(['--public-endpoint', 'ftp://x'], {})), [/--public-endpoint "ftp:\/\/x"/]);
    assertProblems(problemsOf(() => loadConfig(['--public-endpoint', 'http://x/path'], {})), [/--public-endpoint/]);
  });

  test('tls cert and key together are accepted', () => {
    const c = load(['--tls-cert', 'c.pem', '--tls-key', 'k.pem']);
    assert.equal(c.tlsCert, 'c.pem');
    assert.equal(c.tlsKey, 'k.pem');
  });

  test('bad values produce one ConfigError listing every problem', () => {
    const file = configFile({ bogus: 1, 'log-level': 'loud' });
    const problems = problemsOf(() => loadConfig(
      ['--mqtt-port', '70000', '--max-packet-size', '10', '--retain-available=maybe', '--tls-cert', 'c.pem', '--host', '0.0.0.0', '--config', file],
      { TERN_HTTP_PORT: 'http', DATABASE_URL: 'mysql://x' },
    ));
    assertProblems(problems, [
      /--mqtt-port.*0 to 65535.*"70000"/, // bad port
      /TERN_HTTP_PORT.*"http"/, // bad port from env, named by its variable
      /--max-packet-size.*64 to 268435455.*"10"/, // out-of-range int
      /--retain-available.*true or false.*"maybe"/, // bad bool
      /unknown option "bogus"/, // unknown config-file key
      /"log-level".*one of .*"loud"/, // bad choice from the file
      /--tls-cert and --tls-key/, // cert without key
      /DATABASE_URL.*postgres/,
    ]);
    const err = new ConfigError(problems);
    for (const p of problems) assert.ok(err.message.includes(p), 'the message lists every problem');
  });

  test('integers must be plain decimal integers', () => {
    for (const bad of ['1.5', '1e3', '0x10', '-1', '', 'ten']) {
      const problems = problemsOf(() => loadConfig([`--max-inflight=${bad}`], {}));
      assertProblems(problems, [/--max-inflight: expected an integer from 1 to 65535/]);
    }
  });

  test('--metrics-token: a secret fit for an Authorization header', () => {
    assert.equal(load(['--metrics-token', 's3cret-Token.1'], {}).metricsToken, 's3cret-Token.1');
    assert.equal(load([], { TERN_METRICS_TOKEN: 'from-env' }).metricsToken, 'from-env');
    assertProblems(problemsOf(() => loadConfig(['--metrics-token', 'two words'], {})), [/--metrics-token: expected a non-empty secret/]);
    assertProblems(problemsOf(() => loadConfig(['--metrics-token', ''], {})), [/--metrics-token: expected a non-empty secret/]);
  });

  test('client certificates: --tls-require-client-cert needs --tls-ca, which needs the TLS listeners', () => {
    assertProblems(problemsOf(() => loadConfig(['--tls-require-client-cert', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'], {})), [/--tls-require-client-cert needs --tls-ca/]);
    assertProblems(problemsOf(() => loadConfig(['--tls-ca', 'ca.pem'], {})), [/--tls-ca needs --tls-cert/, /--tls-ca ca.pem: cannot read it/]);
    assertProblems(problemsOf(() => loadConfig(['--tls-cert-user-id', 'email'], {})), [/--tls-cert-user-id.*one of none, cn, san-dns, san-email, san-uri/]);
    assertProblems(problemsOf(() => loadConfig(['--client-cert-header', 'x cert'], {})), [/--client-cert-header.*header name/]);
    const missing = join(dir, 'no-such-ca.pem');
    assertProblems(problemsOf(() => loadConfig(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', missing], {})), [/--tls-ca .*no-such-ca\.pem: cannot read it \(ENOENT\)/]);
    const notPem = configFile('just text');
    assertProblems(problemsOf(() => loadConfig(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', notPem], {})), [/--tls-ca .*: no PEM certificate in it/]);
    const caFile = configFile('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const c = load(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', caFile, '--tls-require-client-cert', '--wss-port', '0',
      '--tls-cert-user-id', 'san-email', '--client-cert-header', 'X-Forwarded-Client-Cert']);
    assert.equal(c.tlsCa, caFile);
    assert.equal(c.tlsRequireClientCert, true);
    assert.equal(c.wssPort, 0);
    assert.equal(c.tlsCertUserId, 'san-email');
    assert.equal(c.clientCertHeader, 'x-forwarded-client-cert', 'header names are compared lower-case');
  });

  test('tls key without cert is reported', () => {
    assertProblems(problemsOf(() => loadConfig(['--tls-key', 'k.pem'], {})), [/--tls-cert and --tls-key/]);
  });

  test('an unknown flag is a ConfigError', () => {
    assertProblems(problemsOf(() => loadConfig(['--nope'], {})), [/--nope/]);
  });

  test('an unknown flag is reported together with every other problem', () => {
    // loadConfig promises to list every problem; an unknown flag must not hide the rest
    const problems = problemsOf(() => loadConfig(['--nope', '--mqtt-port', '70000'], {}));
    assertProblems(problems, [/--nope/, /--mqtt-port.*"70000"/]);
  });

  test('an unreadable or non-object config file is a ConfigError', () => {
    assertProblems(problemsOf(() => loadConfig(['--config', join(dir, 'missing.json')], {})), [/missing\.json/]);
    assertProblems(problemsOf(() => loadConfig(['--config', configFile('{ not json')], {})), [/config file/]);
    assertProblems(problemsOf(() => loadConfig(['--config', configFile([1, 2])], {})), [/not a JSON object/]);
  });

  test('--help returns "help" without validating anything else', () => {
    assert.equal(loadConfig(['--help'], {}), 'help');
    assert.equal(loadConfig(['--help', '--mqtt-port', 'x'], { TERN_HTTP_PORT: 'bad' }), 'help');
  });
});

describe('helpText', () => {
  const text = helpText();

  test('lists every flag with its environment variable', () => {
    for (const [flag, env] of flags) {
      const line = text.split('\n').find((l) => new RegExp(`^\\s+--${flag}[\\s[]`).test(l));
      assert.ok(line, `--${flag} is listed`);
      assert.ok(line.includes(env), `--${flag} names ${env}`);
    }
    assert.match(text, /^\s+--help$/m);
  });

  test('lists nothing loadConfig does not accept, and every listed flag is accepted', () => {
    const listed = [...text.matchAll(/^\s+--([a-z-]+)/gm)].map((m) => m[1]!);
    assert.deepEqual([...listed].sort(), [...flags.map(([f]) => f), 'help'].sort());
    /** The problems loadConfig reports for `--${flag}=1` (none if it accepts the value). */
    const problemsFor = (flag: string): string[] => {
      try {
        loadConfig([`--${flag}=1`], {});
        return [];
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.problems;
      }
    };
    const unknown = (flag: string): RegExp => new RegExp(`^unknown option --${flag}$`);
    // The pattern must match what loadConfig says about a flag it does not know, or the loop below proves nothing
    assert.equal(problemsFor('not-a-flag').filter((p) => unknown('not-a-flag').test(p)).length, 1);
    for (const flag of listed) {
      for (const p of problemsFor(flag)) assert.doesNotMatch(p, unknown(flag), `--${flag} is accepted`);
    }
  });
});
