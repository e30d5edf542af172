// Exposure options: the loopback check that lets anonymous access default to on (only IP literals in
// 127.0.0.0/8, ::1 and the name "localhost" count; a host name that merely starts with "127." does not),
// and --allowed-origins, which takes only origins as browsers send them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { anonymousByDefault, type Config, ConfigError, isLoopbackHost, loadConfig, originList } from '../../src/config.ts';

describe('loopback check', () => {
  test('IP literals in 127.0.0.0/8, ::1 in any notation, and localhost are loopback', () => {
    for (const host of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '127.1.2.3', 'localhost', '::1', '0:0:0:0:0:0:0:1', '0000::0001']) {
      assert.equal(isLoopbackHost(host), true, host);
    }
  });

  test('names and addresses outside 127.0.0.0/8 and ::1 are not loopback', () => {
    for (const host of [
      '127.evil.com', '127.0.0.1.evil.com', '127.0.0.1.', '127.0.0', '127.0.0.256', '127.0.0.1:80', '127', '127.',
      '128.0.0.1', '0.0.0.0', '::', '::2', '::ffff:10.0.0.1', 'localhost.evil.com', 'evil-localhost', 'LOCALHOST.', '',
      ' 127.0.0.1', '0177.0.0.1', '0x7f.0.0.1', '2130706433',
    ]) {
      assert.equal(isLoopbackHost(host), false, JSON.stringify(host));
    }
  });

  test('a host name starting with "127." denies anonymous clients by default like any other non-loopback host', () => {
    assert.equal(anonymousByDefault(loadConfig(['--host', '127.evil.com'], {}) as Config), false);
    assert.equal(anonymousByDefault(loadConfig(['--host', '127.0.0.5'], {}) as Config), true);
  });
});

describe('--allowed-origins', () => {
  test('takes a comma-separated list of origins or *', () => {
    const c = loadConfig(['--allowed-origins', 'https://app.example.com, http://localhost:3000,*'], {}) as Config;
    assert.deepEqual(originList(c.allowedOrigins), ['https://app.example.com', 'http://localhost:3000', '*']);
    assert.deepEqual(originList((loadConfig([], {}) as Config).allowedOrigins), []);
    assert.deepEqual(originList((loadConfig([], { TERN_ALLOWED_ORIGINS: 'http://[::1]:8000' }) as Config).allowedOrigins), ['http://[::1]:8000']);
  });

  test('refuses entries a browser would never send as Origin', () => {
    for (const bad of ['app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'HTTPS://APP.example.com', 'https://app.example.com:443', 'http://localhost:80', '**']) {
      assert.throws(() => loadConfig(['--allowed-origins', bad], {}), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.problems.length, 1, bad);
        assert.match(e.problems[0]!, /^--allowed-origins: ".*" is not an origin/);
        return true;
      }, bad);
    }
  });
});
