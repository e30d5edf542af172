// First run as root from a checkout in a directory other users cannot enter (root's home is 0700; any
// `mktemp -d`): PostgreSQL runs as the `postgres` user, which can reach neither the binaries in
// node_modules nor the cluster in ./data/pg. The broker on its embedded default must work there, without
// loosening the checkout's permissions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { uniqueId } from '../helpers/clients.ts';
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
});
