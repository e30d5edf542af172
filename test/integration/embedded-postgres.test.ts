// The zero-setup database (src/postgres/embedded.ts): initialise once, restart on the same data, adopt
// the server a SIGKILLed broker left running, and clear a stale postmaster.pid.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/postgres/embedded.ts';
import { repoRoot } from '../helpers/broker-process.ts';

interface LogEntry { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown>; msg: string | undefined; atMs: number }

function recordingLogger(): { logger: Parameters<typeof startEmbeddedPostgres>[0]['logger']; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry['level']) => (fields: object, msg?: string): void => {
    entries.push({ level, fields: fields as Record<string, unknown>, msg, atMs: Date.now() });
  };
  return { logger: { info: at('info'), warn: at('warn'), error: at('error') }, entries };
}

async function query(url: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Array<Record<string, unknown>>;
  } finally {
    await client.end();
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  return Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // PID 1 here may not reap orphans: a dead one can linger as a zombie
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc: kill(0) is all we know
  }
}

/** The PID of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

describe('embedded postgres', () => {
  let dataDir: string;
  const open = new Set<EmbeddedDatabase>();
  /** postgres PIDs that a SIGKILLed child of ours left behind; killed in after() if a test failed before stopping them */
  const orphans = new Set<number>();

  async function start(logger = recordingLogger()): Promise<{ db: EmbeddedDatabase; entries: LogEntry[] }> {
    const db = await startEmbeddedPostgres({ dataDir, logger: logger.logger });
    open.add(db);
    return { db, entries: logger.entries };
  }
  async function stop(db: EmbeddedDatabase): Promise<void> {
    await db.stop();
    open.delete(db);
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'tern-embedded-'));
    // As root the server runs as user postgres, who must be able to enter the temp dir
    await chmod(dataDir, 0o755);
  });

  after(async () => {
    for (const db of open) await db.stop().catch(() => {}); // best effort: the test already failed
    for (const pid of orphans) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  test('first start initialises a cluster, keeps its credentials private and serves database tern', async () => {
    const { db, entries } = await start();
    assert.ok(entries.some((e) => e.msg === 'embedded postgres: initialised cluster'));
    assert.ok(entries.some((e) => e.msg === 'embedded postgres: started server'));
    assert.match(db.url, /^postgres:\/\/tern_broker:[0-9a-f]+@127\.0\.0\.1:\d+\/tern$/);
    assert.deepEqual(await query(db.url, 'select 1 as one'), [{ one: 1 }]);
    const [settings] = await query(db.url, "select current_setting('listen_addresses') as l, current_database() as d");
    assert.deepEqual(settings, { l: '127.0.0.1', d: 'tern' });
    const credentials = JSON.parse(await readFile(path.join(dataDir, 'pg-credentials.json'), 'utf8')) as Record<string, { user: string }>;
    assert.equal(credentials['owner']?.user, 'tern_broker');
    assert.equal((await stat(path.join(dataDir, 'pg-credentials.json'))).mode & 0o777, 0o600);
    await query(db.url, "create table kept (v text); insert into kept values ('before restart')");
    const pid = await postmasterPid(dataDir);
    await stop(db);
    assert.equal(isRunning(pid), false);
    assert.equal(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), false);
  });

  test('a second start reuses the cluster without initialising it again', async () => {
    const { db, entries } = await start();
    assert.equal(entries.some((e) => e.msg === 'embedded postgres: initialised cluster'), false);
    assert.ok(entries.some((e) => e.msg === 'embedded postgres: started server'));
    assert.deepEqual(await query(db.url, 'select v from kept'), [{ v: 'before restart' }]);
    await stop(db);
  });

  test('after the owning process is SIGKILLed (not before), the next start adopts its still-running server', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/embedded-postgres-child.ts', dataDir], {
      cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    const { url } = JSON.parse(line) as { url: string };
    const pid = await postmasterPid(dataDir);
    orphans.add(pid);
    await query(url, "insert into kept values ('committed before kill -9')");
    // While its owner lives, the server is not an orphan: a second broker on the same directory is refused
    await assert.rejects(start(), new RegExp(`in use by the server \\(pid ${pid}\\) of another running process \\(pid ${child.pid}`));
    child.kill('SIGKILL');
    await exited;
    assert.equal(isRunning(pid), true, 'the server outlives the process that started it');

    const { db, entries } = await start();
    const adopted = entries.find((e) => e.msg === 'embedded postgres: adopted running server');
    assert.ok(adopted, `expected adoption, got ${JSON.stringify(entries)}`);
    assert.equal(adopted.fields['pid'], pid);
    assert.deepEqual((await query(db.url, 'select v from kept order by v')).map((r) => r['v']), ['before restart', 'committed before kill -9']);
    await stop(db);
    assert.equal(isRunning(pid), false, 'stop() ends the adopted server');
    orphans.delete(pid);
    assert.equal(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), false);
  });

  test('a stale postmaster.pid (its process gone, or not postgres) is removed and the server starts', async () => {
    for (const pid of [deadPid(), process.pid]) {
      const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
      await writeFile(pidFile, `${pid}\n${path.join(dataDir, 'pg')}\n1700000000\n5432\n\n127.0.0.1\n0\nready   \n`);
      const { db, entries } = await start();
      const removed = entries.find((e) => e.msg === 'embedded postgres: removed stale postmaster.pid');
      assert.equal(removed?.fields['pid'], pid);
      assert.ok(entries.some((e) => e.msg === 'embedded postgres: started server'));
      assert.equal((await query(db.url, 'select count(*)::int as n from kept'))[0]?.['n'], 2);
      await stop(db);
    }
  });

  test('a stale postmaster.pid is kept while a dead server\'s backends still run in the cluster directory', async () => {
    // A stand-in backend: a process named postgres whose working directory is the cluster, as real backends' is
    const link = path.join(dataDir, 'bin', 'postgres');
    await mkdir(path.dirname(link), { recursive: true });
    await symlink(process.execPath, link);
    const backend = spawn(link, ['-e', 'setInterval(() => {}, 60_000)'], { cwd: path.join(dataDir, 'pg'), stdio: 'ignore' });
    const backendExited = once(backend, 'exit');
    await once(backend, 'spawn');
    await writeFile(path.join(dataDir, 'pg', 'postmaster.pid'), `${deadPid()}\n${path.join(dataDir, 'pg')}\n1700000000\n5432\n\n127.0.0.1\n0\nready   \n`);
    const starting = start();
    let killedAtMs = 0;
    // The start must not go ahead while the backend lives; let it wait a moment, then end the backend
    const timer = setTimeout(() => { killedAtMs = Date.now(); backend.kill('SIGKILL'); }, 500);
    try {
      const { db, entries } = await starting;
      const removed = entries.find((e) => e.msg === 'embedded postgres: removed stale postmaster.pid');
      assert.ok(removed && killedAtMs > 0 && removed.atMs >= killedAtMs, 'the pid file was removed only after the backend was gone');
      assert.equal((await query(db.url, 'select count(*)::int as n from kept'))[0]?.['n'], 2);
      await stop(db);
    } finally {
      clearTimeout(timer);
      if (backend.exitCode === null && backend.signalCode === null) backend.kill('SIGKILL');
      await backendExited;
    }
  });

  test('a cluster whose credentials file is missing fails with a clear error', async () => {
    const credentials = path.join(dataDir, 'pg-credentials.json');
    const saved = await readFile(credentials);
    await rm(credentials);
    try {
      await assert.rejects(start(), /cannot read the cluster's credentials from .*pg-credentials\.json.*DATABASE_URL/);
    } finally {
      await writeFile(credentials, saved, { mode: 0o600 });
    }
  });
});
