// Access keys: the key file (created once, mode 0600, overridable), rotation of one key, and
// connection strings the real @azure/web-pubsub SDK accepts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebPubSubServiceClient } from '@azure/web-pubsub';
import {
  connectionString,
  generateAccessKey,
  loadOrCreateAccessKeys,
  parseConnectionString,
  regenerateAccessKey,
} from '../../../src/auth/keys.ts';

let root: string;
before(() => { root = mkdtempSync(join(tmpdir(), 'tern-keys-test-')); });
after(() => { rmSync(root, { recursive: true, force: true }); });

let dirCounter = 0;
/** A directory path under the temp root that does not exist yet. */
const freshDir = (): string => join(root, `data-${++dirCounter}`, 'nested');

const KEY_A = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=';
const KEY_B = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=';

describe('generateAccessKey', () => {
  test('44 base64 characters from 32 random bytes, different each time', () => {
    const a = generateAccessKey();
    const b = generateAccessKey();
    assert.match(a, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(Buffer.from(a, 'base64').length, 32);
    assert.notEqual(a, b);
  });
});

describe('loadOrCreateAccessKeys', () => {
  test('creates the file (mode 0600, dir created) on first start and loads the same keys after', () => {
    const dir = freshDir();
    const first = loadOrCreateAccessKeys(dir, {});
    assert.equal(first.created, true);
    assert.equal(first.file, join(dir, 'access-keys.json'));
    assert.equal(statSync(first.file).mode & 0o777, 0o600);
    assert.match(first.keys.primary, /^[A-Za-z0-9+/]{43}=$/);
    assert.match(first.keys.secondary, /^[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(first.keys.primary, first.keys.secondary);
    assert.deepEqual(JSON.parse(readFileSync(first.file, 'utf8')), first.keys);
    assert.deepEqual(readdirSync(dir), ['access-keys.json'], 'no temp file left behind');

    const second = loadOrCreateAccessKeys(dir, {});
    assert.equal(second.created, false);
    assert.deepEqual(second.keys, first.keys);
  });

  test('given keys override the file and are not written to it', () => {
    const dir = freshDir();
    const stored = loadOrCreateAccessKeys(dir, {}).keys;
    const r = loadOrCreateAccessKeys(dir, { primary: KEY_A });
    assert.deepEqual(r.keys, { primary: KEY_A, secondary: stored.secondary });
    assert.equal(r.created, false);
    assert.deepEqual(JSON.parse(readFileSync(r.file, 'utf8')), stored);
    const s = loadOrCreateAccessKeys(dir, { secondary: KEY_B });
    assert.deepEqual(s.keys, { primary: stored.primary, secondary: KEY_B });
  });

  test('with both keys given the file is not created', () => {
    const dir = freshDir();
    const r = loadOrCreateAccessKeys(dir, { primary: KEY_A, secondary: KEY_B });
    assert.deepEqual(r.keys, { primary: KEY_A, secondary: KEY_B });
    assert.equal(r.created, false);
    assert.equal(existsSync(r.file), false);
  });

  test('a short key or one containing ";" is refused with a clear message', () => {
    const dir = freshDir();
    assert.throws(() => loadOrCreateAccessKeys(dir, { primary: 'short' }), /primary access key must be at least 16 characters/);
    assert.throws(() => loadOrCreateAccessKeys(dir, { secondary: 'abcdefgh;ijklmnopq' }), /secondary access key must not contain ';'/);
    assert.equal(existsSync(dir), false, 'nothing written for refused keys');
  });

  test('a corrupt or incomplete file is refused with an Error naming it', () => {
    const dir = freshDir();
    const file = loadOrCreateAccessKeys(dir, {}).file;
    writeFileSync(file, '{"primary": "x"');
    assert.throws(() => loadOrCreateAccessKeys(dir, {}), (err: Error) => err.message.includes(file) && /not valid JSON/.test(err.message));
    writeFileSync(file, JSON.stringify({ primary: KEY_A }));
    assert.throws(() => loadOrCreateAccessKeys(dir, {}), (err: Error) => err.message === `"secondary" in ${file} must be a string`);
    writeFileSync(file, JSON.stringify({ primary: KEY_A, secondary: 'tiny' }));
    assert.throws(() => loadOrCreateAccessKeys(dir, {}), /"secondary" in .* must be at least 16 characters/);
  });
});

describe('regenerateAccessKey', () => {
  test('replaces only the named key, keeps mode 0600, leaves no temp file', () => {
    const dir = freshDir();
    const before = loadOrCreateAccessKeys(dir, {}).keys;
    const afterPrimary = regenerateAccessKey(dir, 'primary');
    assert.notEqual(afterPrimary.primary, before.primary);
    assert.match(afterPrimary.primary, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(afterPrimary.secondary, before.secondary);
    assert.deepEqual(loadOrCreateAccessKeys(dir, {}).keys, afterPrimary);

    const afterSecondary = regenerateAccessKey(dir, 'secondary');
    assert.equal(afterSecondary.primary, afterPrimary.primary);
    assert.notEqual(afterSecondary.secondary, before.secondary);
    const file = join(dir, 'access-keys.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), afterSecondary);
    assert.deepEqual(readdirSync(dir), ['access-keys.json']);
  });

  test('without a key file there is nothing to regenerate', () => {
    assert.throws(() => regenerateAccessKey(freshDir(), 'primary'), /there is no access key file/);
  });
});

describe('connection strings', () => {
  test('Azure format with Port, accepted by the SDK, which then talks to that host and port', async () => {
    const key = generateAccessKey();
    const cs = connectionString('http://127.0.0.1:8080/', key);
    assert.equal(cs, `Endpoint=http://127.0.0.1;Port=8080;AccessKey=${key};Version=1.0;`);
    const client = new WebPubSubServiceClient(cs, 'Hub1', { allowInsecureConnection: true });
    assert.equal(client.endpoint, 'http://127.0.0.1:8080/');
    const { baseUrl } = await client.getClientAccessToken({ clientProtocol: 'mqtt' });
    assert.equal(baseUrl, 'ws://127.0.0.1:8080/clients/mqtt/hubs/Hub1');
  });

  test('no Port field when the URL has no explicit port; URL objects accepted', () => {
    const cs = connectionString(new URL('https://broker.example.com'), KEY_A);
    assert.equal(cs, `Endpoint=https://broker.example.com;AccessKey=${KEY_A};Version=1.0;`);
    const client = new WebPubSubServiceClient(cs, 'Hub1');
    assert.equal(client.endpoint, 'https://broker.example.com/');
  });

  test('an endpoint with a path or a bad key is refused', () => {
    assert.throws(() => connectionString('http://127.0.0.1:8080/prefix', KEY_A), /must not carry a path/);
    assert.throws(() => connectionString('http://127.0.0.1:8080', 'abc;defghijklmnopq'), /must not contain ';'/);
    assert.throws(() => connectionString('ftp://127.0.0.1', KEY_A), /must be http or https/);
  });

  test('parseConnectionString reads what connectionString writes', () => {
    const cs = connectionString('http://127.0.0.1:8080', KEY_A);
    assert.deepEqual(parseConnectionString(cs), { endpoint: 'http://127.0.0.1:8080', accessKey: KEY_A, port: 8080 });
  });

  test('parseConnectionString follows the SDK rules (spec §6.1)', () => {
    // names case-insensitive, unknown names ignored, '=' inside the key kept, no scheme → https
    assert.deepEqual(parseConnectionString(`endpoint=myhost.example;accesskey=${KEY_A};Foo=bar;Version=1.0;`), {
      endpoint: 'https://myhost.example',
      accessKey: KEY_A,
    });
    // Port overrides the URL's port
    assert.deepEqual(parseConnectionString(`Endpoint=http://localhost:1234;Port=8089;AccessKey=${KEY_A}`), {
      endpoint: 'http://localhost:8089',
      accessKey: KEY_A,
      port: 8089,
    });
    // a port in the URL alone counts as explicit
    assert.equal(parseConnectionString(`Endpoint=http://localhost:1234;AccessKey=${KEY_A}`).port, 1234);
    assert.throws(() => parseConnectionString(`AccessKey=${KEY_A}`), { name: 'TypeError', message: 'connection string missing endpoint' });
    assert.throws(() => parseConnectionString('Endpoint=http://localhost;'), { name: 'TypeError', message: 'connection string missing access key' });
    assert.throws(() => parseConnectionString(`Endpoint=http://localhost;Port=99999;AccessKey=${KEY_A}`), TypeError);
  });
});
