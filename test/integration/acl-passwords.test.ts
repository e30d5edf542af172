// The password file and the ACL file on a real broker process: the password file made with the real
// `tern passwd` command, user names and passwords checked at CONNECT (3.1.1 and 5.0 over TCP), the
// ACL's anonymous section, a user section with a deny line and a `%c` pattern applied to PUBLISH and
// SUBSCRIBE, the connect audit rows, and SIGHUP reloading the ACL (a broken file keeps the old rules).
// A client holding a token with every role watches the topics: it is not bound by the ACL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { repoRoot, startBroker, type BrokerProcess, logCount, waitForLog } from '../helpers/broker-process.ts';
import { close, collect, pubCode, refusal, uniqueId, type Version } from '../helpers/clients.ts';
import { auditRows } from '../helpers/audit.ts';
import { subscribeRaw } from '../helpers/inbox.ts';

const HUB = 'acl';
const ACL = `# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret

pattern readwrite devices/%c/#
`;

let dir: string;
let passwordFile: string;
let aclFile: string;
let broker: BrokerProcess & { databaseUrl: string | undefined };
let db: pg.Client;
let service: WebPubSubServiceClient;

/** `tern passwd ...` as a child process, from the source. */
function passwd(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'passwd', ...args], {
    cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-acl-'));
  passwordFile = path.join(dir, 'passwords');
  aclFile = path.join(dir, 'acl');
  const made = passwd(['-c', '-b', passwordFile, 'alice', 'secret1']);
  assert.equal(made.status, 0, `passwd -c failed: ${made.stderr}`);
  const added = passwd(['-b', passwordFile, 'bob', 'secret2']);
  assert.equal(added.status, 0, `passwd (add bob) failed: ${added.stderr}`);
  writeFileSync(aclFile, ACL);
  broker = await startBroker(['--password-file', passwordFile, '--acl-file', aclFile, '--allow-anonymous', '--default-hub', HUB]);
  db = new pg.Client({ connectionString: broker.databaseUrl });
  await db.connect();
  service = new WebPubSubServiceClient(broker.connectionString, HUB, { allowInsecureConnection: true });
});
after(async () => {
  await db?.end();
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const vname = (v: Version): string => (v === 4 ? '3.1.1' : '5.0');

function opts(version: Version, extra: IClientOptions = {}): IClientOptions {
  return { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId('acl'), ...extra };
}

function tcp(version: Version, extra: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(broker.mqttUrl, opts(version, extra));
}

function alice(version: Version, extra: IClientOptions = {}): Promise<MqttClient> {
  return tcp(version, { username: 'alice', password: 'secret1', ...extra });
}

/** A client with a token holding every role: the ACL does not bind it (it watches and sends sentinels). */
async function watcher(): Promise<MqttClient> {
  const t = await service.getClientAccessToken({ clientProtocol: 'mqtt', roles: ['webpubsub.sendToGroup', 'webpubsub.joinLeaveGroup'] });
  return tcp(5, { username: 'watcher', password: t.token, clientId: uniqueId('watch') });
}



/**
 * `publisher` sends `topic` (expected to be refused: `deniedCode`) then the allowed `sentinel`
 * topic; `watch` (subscribed to both) must see the sentinel as the next message: the refused one
 * was not routed (messages of one publisher reach a subscriber in order).
 */
async function assertNotRouted(publisher: MqttClient, watch: MqttClient, topic: string, deniedCode: number, sentinel: string): Promise<void> {
  const next = collect(watch, 1);
  assert.equal(await pubCode(publisher, topic, 'forbidden'), deniedCode, `PUBLISH ${topic}`);
  assert.equal(await pubCode(publisher, sentinel, 'sentinel'), 0, `PUBLISH ${sentinel} (sentinel)`);
  const [m] = await next;
  assert.deepEqual([m!.topic, m!.payload.toString()], [sentinel, 'sentinel'], `${topic} must not be routed`);
}



/** Rewrite the ACL file, SIGHUP, and wait for the log line saying how the reload went. */
async function reload(text: string, expectLog: string): Promise<void> {
  writeFileSync(aclFile, text);
  const before = logCount(broker, expectLog);
  broker.proc.kill('SIGHUP');
  await waitForLog(broker, expectLog, before);
}



describe('the password file made by `tern passwd`', () => {
  test('holds alice and bob, one scrypt hash each, mode 0600', () => {
    const lines = readFileSync(passwordFile, 'utf8').trim().split('\n');
    assert.deepEqual(lines.map((l) => l.split(':')[0]), ['alice', 'bob']);
    for (const l of lines) assert.ok(!l.includes('secret'), 'no clear-text password in the file');
  });

  for (const version of [4, 5] as const) {
    test(`${vname(version)}: alice and bob with their passwords connect; a wrong password or an unknown user is refused (${version === 5 ? '0x86' : '4'})`, async () => {
      const a = await alice(version);
      const b = await tcp(version, { username: 'bob', password: 'secret2' });
      await close(a, b);
      const badCode = version === 5 ? 0x86 : 4;
      assert.equal((await refusal(tcp(version, { username: 'alice', password: 'secret2' }))).code, badCode, 'wrong password');
      assert.equal((await refusal(tcp(version, { username: 'alice', password: '' }))).code, badCode, 'empty password');
      assert.equal((await refusal(tcp(version, { username: 'carol', password: 'secret1' }))).code, badCode, 'unknown user');
    });
  }

  test('a user name without a password is refused (0x86 / 4): a user name alone never selects an ACL section', async () => {
    for (const version of [4, 5] as const) {
      assert.equal((await refusal(tcp(version, { username: 'alice' }))).code, version === 5 ? 0x86 : 4);
    }
  });

  test('the connect audit rows of alice say actor alice, method password', async () => {
    const clientIds = [uniqueId('audit4'), uniqueId('audit5')];
    const a4 = await alice(4, { clientId: clientIds[0]! });
    const a5 = await alice(5, { clientId: clientIds[1]! });
    const rows = await auditRows(db, "event = 'connect' AND client_id = ANY($1)", [clientIds], 2);
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.actor, 'alice');
      assert.equal(row.detail?.['method'], 'password');
      assert.equal(row.detail?.['username'], 'alice');
    }
    await close(a4, a5);
  });
});

describe('the ACL file', () => {
  for (const version of [4, 5] as const) {
    const denied = version === 5 ? 0x87 : 0; // 3.1.1: acknowledged and dropped

    test(`${vname(version)}: alice may publish alice/x; alice/secret (deny line) and bob/x are refused and not routed`, async () => {
      const w = await watcher();
      await w.subscribeAsync(['alice/#', 'bob/#'], { qos: 1 });
      const a = await alice(version);
      const got = collect(w, 1);
      assert.equal(await pubCode(a, 'alice/x', 'hello'), 0);
      const [m] = await got;
      assert.deepEqual([m!.topic, m!.payload.toString()], ['alice/x', 'hello']);
      await assertNotRouted(a, w, 'alice/secret', denied, 'alice/x');
      await assertNotRouted(a, w, 'bob/x', denied, 'alice/x');
      await close(a, w);
    });

    test(`${vname(version)}: alice SUBSCRIBE: alice/x and alice/x/# granted; alice/# (could deliver the denied alice/secret), alice/secret and # refused (${version === 5 ? '0x87' : '0x80'})`, async () => {
      const a = await alice(version);
      const refused = version === 5 ? 0x87 : 0x80;
      const suback = await subscribeRaw(a, [
        { topic: 'alice/x', qos: 1 },
        { topic: 'alice/x/#', qos: 1 },
        { topic: 'alice/#', qos: 1 },
        { topic: 'alice/secret', qos: 1 },
        { topic: '#', qos: 1 },
      ]);
      assert.deepEqual(suback.granted, [1, 1, refused, refused, refused]);
      // The refused '#' delivers nothing: a message on a topic only '#' would match is not received
      const w = await watcher();
      const got = collect(a, 1);
      await w.publishAsync('elsewhere/y', 'not for alice', { qos: 1 });
      await w.publishAsync('alice/x', 'sentinel', { qos: 1 });
      const [m] = await got;
      assert.deepEqual([m!.topic, m!.payload.toString()], ['alice/x', 'sentinel']);
      await close(a, w);
    });

    test(`${vname(version)}: an anonymous client may subscribe public/# but not publish there; nor subscribe #`, async () => {
      const w = await watcher();
      await w.subscribeAsync(['public/#', 'devices/#'], { qos: 1 });
      const clientId = uniqueId('anon');
      const anon = await tcp(version, { clientId });
      const suback = await subscribeRaw(anon, [{ topic: 'public/#', qos: 1 }, { topic: '#', qos: 1 }, { topic: 'alice/x', qos: 1 }]);
      const refused = version === 5 ? 0x87 : 0x80;
      assert.deepEqual(suback.granted, [1, refused, refused]);
      // It receives what is published under public/
      const got = collect(anon, 1);
      await w.publishAsync('public/news', 'read me', { qos: 1 });
      assert.equal((await got)[0]!.payload.toString(), 'read me');
      // Its own publish there is refused and not routed; the %c pattern gives it devices/<its id>/ for the sentinel
      await assertNotRouted(anon, w, 'public/x', denied, `devices/${clientId}/t`);
      await close(anon, w);
    });

    test(`${vname(version)}: pattern devices/%c/#: client dev1 may publish devices/dev1/t, not devices/dev2/t`, async () => {
      const w = await watcher();
      await w.subscribeAsync('devices/#', { qos: 1 });
      const dev = await tcp(version, { clientId: 'dev1' });
      const got = collect(w, 1);
      assert.equal(await pubCode(dev, 'devices/dev1/t', 'mine'), 0);
      assert.deepEqual((await got).map((m) => [m.topic, m.payload.toString()]), [['devices/dev1/t', 'mine']]);
      await assertNotRouted(dev, w, 'devices/dev2/t', denied, 'devices/dev1/t');
      const suback = await subscribeRaw(dev, [{ topic: 'devices/dev1/#', qos: 1 }, { topic: 'devices/dev2/#', qos: 1 }]);
      assert.deepEqual(suback.granted, [1, version === 5 ? 0x87 : 0x80]);
      await close(dev, w);
    });
  }
});

describe('SIGHUP reloads the ACL file', () => {
  test('a new rule applies at once, to a client connected before too; a broken file keeps the rules in force', async () => {
    const w = await watcher();
    await w.subscribeAsync('public/#', { qos: 1 });
    const before = await tcp(5, { clientId: uniqueId('before') });
    assert.equal(await pubCode(before, 'public/x'), 0x87, 'refused before the reload');

    await reload(`${ACL}\n# reloaded\n`.replace('topic read public/#', 'topic read public/#\ntopic write public/#'), 'access keys and policy files reloaded (SIGHUP)');
    const got = collect(w, 2);
    assert.equal(await pubCode(before, 'public/x', 'from before'), 0, 'a client connected before the reload gets the new rule');
    const after = await tcp(5);
    assert.equal(await pubCode(after, 'public/x', 'from after'), 0);
    assert.deepEqual((await got).map((m) => m.payload.toString()), ['from before', 'from after']);

    // A broken file: logged, and the rules loaded last stay in force (write allowed, alice's deny kept)
    await reload('topic write public/#\nbogus line\n', 'reload failed');
    const failed = broker.logs.filter((l) => String(l['msg']).includes('reload failed')).at(-1)!;
    assert.match(JSON.stringify(failed['err']), /acl line 2/);
    assert.equal(await pubCode(after, 'public/y'), 0, 'the previous rules stay: anonymous write to public/#');
    const a = await alice(5);
    assert.equal(await pubCode(a, 'alice/secret'), 0x87, 'the previous rules stay: alice/secret denied');
    assert.equal(await pubCode(a, 'alice/x'), 0);
    await close(before, after, a, w);
  });
});
