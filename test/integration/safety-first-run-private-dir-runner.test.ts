// First run as root from a private (0700) checkout, the test runner's part: scripts/run-tests.mjs starts
// its own embedded PostgreSQL (as user postgres, who cannot reach the checkout) and runs a test file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { makePrivateCheckout, notRoot, userEnv, type PrivateCheckout } from '../helpers/private-checkout.ts';

describe('first run from a private (0700) checkout, as root', { skip: notRoot }, () => {
  let co: PrivateCheckout;
  let dir: string;
  let checkout: string;
  before(() => {
    co = makePrivateCheckout();
    ({ dir, checkout } = co);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });
  after(() => { co?.remove(); });

  test('the test runner starts its own embedded PostgreSQL there and runs a test file', async (t) => {
    const env = userEnv();
    delete env['DOCKER_HOST'];
    const proc = spawn(process.execPath, ['scripts/run-tests.mjs', 'test/unit/safety-exposure-config.test.ts'], {
      cwd: checkout, env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    proc.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    const timer = setTimeout(() => proc.kill('SIGTERM'), 50_000);
    const [code] = await once(proc, 'exit') as [number | null];
    clearTimeout(timer);
    if (/test database: PostgreSQL container/.test(out)) {
      t.skip('a Docker engine answered, so the runner used a container rather than its embedded server');
      return;
    }
    assert.match(out, /test database: embedded PostgreSQL on 127\.0\.0\.1:\d+/, out);
    assert.equal(code, 0, out);
    assert.match(out, /# fail 0/);
  });
});
