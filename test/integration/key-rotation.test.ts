// Access key rotation on a real broker process: keys generated into <data-dir>/access-keys.json on
// first start, tokens signed (by @azure/web-pubsub) with either key accepted, `tern keys regenerate
// secondary` run as a child process, SIGHUP, then the old secondary refused while the primary and
// a connection made with the old key before the rotation keep working; `tern keys show`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { repoRoot, startBroker, type BrokerProcess, logCount, waitForLog } from '../helpers/broker-process.ts';
import { close, collect, refusal, uniqueId } from '../helpers/clients.ts';
import { upgradeStatus } from '../helpers/rest.ts';

const HUB = 'rotation';
const ALL_ROLES = ['webpubsub.sendToGroup', 'webpubsub.joinLeaveGroup'];

let dataDir: string;
let broker: BrokerProcess;

interface Keys { primary: string; secondary: string }
const readKeys = (): Keys => JSON.parse(readFileSync(path.join(dataDir, 'access-keys.json'), 'utf8')) as Keys;
const cs = (key: string): string => `Endpoint=http://127.0.0.1;Port=${broker.httpPort};AccessKey=${key};Version=1.0;`;

/** `tern keys ...` as a child process, from the source. */
function keysCommand(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'keys', ...args, '--data-dir', dataDir], {
    cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A client access token (MQTT URL) signed with `key` the way the SDK signs it. */
async function tokenWith(key: string, roles: string[] = []): Promise<{ token: string; url: string }> {
  const service = new WebPubSubServiceClient(cs(key), HUB, { allowInsecureConnection: true });
  const t = await service.getClientAccessToken({ clientProtocol: 'mqtt', roles });
  return { token: t.token, url: t.url };
}

const base = (extra: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('rot'), ...extra });



/** Subscribe, publish to itself at QoS 1, receive it: the connection works end to end. */
async function roundTrip(c: MqttClient, payload: string): Promise<void> {
  const topic = `rot/${uniqueId()}`;
  await c.subscribeAsync(topic, { qos: 1 });
  const got = collect(c, 1);
  await c.publishAsync(topic, payload, { qos: 1 });
  assert.equal((await got)[0]!.payload.toString(), payload);
}


before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'tern-keys-'));
  broker = await startBroker(['--data-dir', dataDir, '--allow-anonymous=false', '--default-hub', HUB], {}, { testKeys: false });
});
after(async () => {
  await broker?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('access keys in <data-dir>/access-keys.json', () => {
  test('generated at first start: two distinct keys; the logged connection string carries the primary', () => {
    const keys = readKeys();
    assert.ok(keys.primary.length >= 16 && keys.secondary.length >= 16);
    assert.notEqual(keys.primary, keys.secondary);
    assert.ok(broker.logs.some((l) => l['msg'] === 'access keys generated'), 'the broker logged that it generated the keys');
    assert.equal(broker.connectionString, cs(keys.primary));
  });

  test('tokens signed with either key connect (WebSocket and TCP); one signed with another key does not', async () => {
    const keys = readKeys();
    for (const key of [keys.primary, keys.secondary]) {
      const t = await tokenWith(key);
      await close(await mqtt.connectAsync(t.url, base()));
      await close(await mqtt.connectAsync(broker.mqttUrl, base({ username: 'u', password: t.token })));
    }
    const forged = await tokenWith('some-other-key-that-is-long-enough');
    assert.equal((await upgradeStatus(forged.url)).status, 401);
  });

  test('`tern keys show` prints both connection strings', () => {
    const keys = readKeys();
    const r = keysCommand(['show', '--endpoint', `http://127.0.0.1:${broker.httpPort}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(path.join(dataDir, 'access-keys.json')), r.stdout);
    assert.ok(r.stdout.includes(`primary:   ${cs(keys.primary)}`), r.stdout);
    assert.ok(r.stdout.includes(`secondary: ${cs(keys.secondary)}`), r.stdout);
  });
});

describe('rotating the secondary key', () => {
  test('after `tern keys regenerate secondary` and SIGHUP: the old secondary is refused, the primary and the new secondary work, an earlier connection stays', async () => {
    const old = readKeys();
    // Connected with the secondary before the rotation
    const earlier = await mqtt.connectAsync((await tokenWith(old.secondary, ALL_ROLES)).url, base());
    const oldSecondaryToken = await tokenWith(old.secondary);
    assert.equal((await upgradeStatus(oldSecondaryToken.url)).status, 101, 'the old secondary works before the rotation');

    const r = keysCommand(['regenerate', 'secondary']);
    assert.equal(r.status, 0, r.stderr);
    const fresh = readKeys();
    assert.equal(fresh.primary, old.primary, 'the primary is unchanged');
    assert.notEqual(fresh.secondary, old.secondary, 'the secondary is new');
    assert.ok(r.stdout.includes(`new secondary: ${fresh.secondary}`), r.stdout);

    const reloads = logCount(broker, 'access keys and policy files reloaded (SIGHUP)');
    broker.proc.kill('SIGHUP');
    await waitForLog(broker, 'access keys and policy files reloaded (SIGHUP)', reloads);

    // The old secondary: 401 at the upgrade, CONNACK 0x86 on TCP
    const refused = await upgradeStatus(oldSecondaryToken.url);
    assert.equal(refused.status, 401);
    assert.match(refused.body, /^access token refused: /);
    const stale = await tokenWith(old.secondary);
    assert.equal((await refusal(mqtt.connectAsync(broker.mqttUrl, base({ username: 'u', password: stale.token })))).code, 0x86);

    // The primary and the new secondary work
    for (const key of [fresh.primary, fresh.secondary]) {
      const c = await mqtt.connectAsync((await tokenWith(key, ALL_ROLES)).url, base());
      await roundTrip(c, 'after rotation');
      await close(c);
    }

    // The connection made with the old key is still up and still works
    assert.equal(earlier.connected, true);
    await roundTrip(earlier, 'still here');
    await close(earlier);

    // `keys show` prints the new secondary
    const shown = keysCommand(['show', '--endpoint', `http://127.0.0.1:${broker.httpPort}`]);
    assert.equal(shown.status, 0, shown.stderr);
    assert.ok(shown.stdout.includes(`secondary: ${cs(fresh.secondary)}`), shown.stdout);
    assert.ok(!shown.stdout.includes(old.secondary), 'the old secondary is gone');
  });
});
