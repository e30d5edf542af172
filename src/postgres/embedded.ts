// Zero-setup PostgreSQL for when DATABASE_URL is unset: a private cluster in `${dataDir}/pg` on a
// loopback port. Owns that cluster's life (initialise, start, adopt after a kill -9, stop) and its two
// roles: the cluster's superuser, kept for administration, and the login role the broker connects as,
// which owns database `tern` and nothing more (no SUPERUSER, CREATEROLE or CREATEDB). Knows nothing of the schema.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { isPostgres, liveNodeParent, postgresProcessesIn, readPidFile, sleep, stopServer } from './postmaster.ts';
import { initCluster, postgresBinaries, postgresRunAs, startServer } from './server.ts';

/** A running embedded server and the URL of its `tern` database. */
export interface EmbeddedDatabase {
  /** URL of database `tern` as its owner role (not a superuser). */
  url: string;
  /** stop the server (fast shutdown) */
  stop(): Promise<void>;
}

type Logger = Record<'info' | 'warn' | 'error', (o: object, m?: string) => void>;
interface Role { user: string; password: string }
/** pg-credentials.json: the superuser (`admin`) and the broker's role (`owner`). Files of older versions hold only the superuser. */
interface Credentials { admin: Role; owner: Role }

const DATABASE = 'tern';
const HOST = '127.0.0.1';
/** The broker's role: owns database `tern`; a plain identifier, used unquoted in SQL below. */
export const OWNER_ROLE = 'tern_broker';

/**
 * Start (or adopt) the embedded server for `dataDir` and make sure database `tern` exists, owned by the
 * broker's role. Throws an Error saying what failed and what to do.
 */
export async function startEmbeddedPostgres(opts: { dataDir: string; logger: Logger }): Promise<EmbeddedDatabase> {
  const { logger } = opts;
  const dataDir = path.resolve(opts.dataDir);
  const pgDir = path.join(dataDir, 'pg');
  const credentialsFile = path.join(dataDir, 'pg-credentials.json');
  const advice = `set DATABASE_URL to use another PostgreSQL server, or move ${pgDir} away to start over (that discards its data)`;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });

  // A broker killed with SIGKILL leaves its postgres running on this directory: use it rather than fight it.
  const orphan = await findRunningServer(pgDir, logger);
  if (orphan) {
    const url = await ensureDatabase(await readCredentials(credentialsFile, advice, logger), orphan.port, pgDir, advice);
    logger.info({ pgDir, pid: orphan.pid, port: orphan.port, database: DATABASE }, 'embedded postgres: adopted running server');
    return { url, stop: () => stopServer(orphan.pid) };
  }

  // As root the server runs as `postgres`; binaries it cannot reach are copied where it can
  const runAs = postgresRunAs();
  const binaries = await postgresBinaries(runAs, logger);
  let credentials: Credentials;
  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
    if (existsSync(pgDir) && (await readdir(pgDir)).length > 0) {
      throw new Error(`embedded postgres: ${pgDir} is not empty but holds no PostgreSQL cluster (no PG_VERSION; an initialisation was interrupted?): ${advice}`);
    }
    const startedMs = Date.now();
    credentials = {
      admin: { user: 'postgres', password: randomBytes(24).toString('hex') },
      owner: { user: OWNER_ROLE, password: randomBytes(24).toString('hex') },
    };
    // Written before initdb so a cluster never exists without the password that opens it
    await writeCredentials(credentialsFile, credentials);
    try {
      await initCluster({ binaries, pgDir, runAs, superuser: credentials.admin.user, password: credentials.admin.password });
    } catch (err) {
      throw new Error(`embedded postgres: initdb failed in ${pgDir}: ${(err as Error).message}`, { cause: err });
    }
    logger.info({ pgDir, user: credentials.admin.user, durationMs: Date.now() - startedMs }, 'embedded postgres: initialised cluster');
  } else {
    credentials = await readCredentials(credentialsFile, advice, logger);
  }

  const startedMs = Date.now();
  const port = await freePort();
  const recent: string[] = [];
  let running = false;
  const onLog = (line: string): void => {
    recent.push(line);
    if (recent.length > 20) recent.shift();
    // Once running, only server-level trouble goes to the broker's log (query errors reach the driver anyway)
    if (running && /\b(PANIC|FATAL):/.test(line)) logger.warn({ pgDir, postgres: line }, 'embedded postgres log');
  };
  let pid: number;
  try {
    ({ pid } = await startServer({
      binaries, pgDir, runAs, port, onLog,
      flags: ['-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories='],
    }));
  } catch (err) {
    const log = recent.join(' | ');
    const what = /already in use/i.test(log) ? `port ${HOST}:${port} is already in use` : (err as Error).message;
    throw new Error(`embedded postgres: could not start on ${pgDir}: ${what}. Postgres said: ${log || '(nothing)'}. Check the directory is writable and not used by another server, or ${advice}`, { cause: err });
  }
  running = true;
  // Should this process exit without stopping it (a failed start-up), the server is told to stop too
  const onExit = (): void => { try { process.kill(pid, 'SIGINT'); } catch { /* already gone */ } };
  process.once('exit', onExit);
  const stop = (): Promise<void> => { running = false; process.off('exit', onExit); return stopServer(pid); };
  const url = await ensureDatabase(credentials, port, pgDir, advice).catch(async (err: unknown) => { await stop(); throw err; });
  logger.info({ pgDir, pid, port, database: DATABASE, durationMs: Date.now() - startedMs }, 'embedded postgres: started server');
  return { url, stop };
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

/** Written to a new file (0600) renamed over the old one: never readable by others, never half written. */
async function writeCredentials(file: string, c: Credentials): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  await writeFile(tmp, `${JSON.stringify(c)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

/** The credentials; a file of an older version (the superuser only) gains the broker's role, written back first. */
async function readCredentials(file: string, advice: string, logger: Logger): Promise<Credentials> {
  let c: Record<string, unknown> | null;
  try {
    c = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown> | null;
  } catch (err) {
    throw new Error(`embedded postgres: cannot read the cluster's credentials from ${file} (${(err as Error).message}): ${advice}`, { cause: err });
  }
  const role = (r: unknown): Role | undefined => {
    const o = r as Partial<Role> | null | undefined;
    return typeof o?.user === 'string' && typeof o.password === 'string' ? { user: o.user, password: o.password } : undefined;
  };
  const admin = role(c?.['admin']);
  const owner = role(c?.['owner']);
  if (admin && owner) return { admin, owner };
  const old = role(c);
  if (!old) throw new Error(`embedded postgres: cannot read the cluster's credentials from ${file} (expected {"admin": {"user", "password"}, "owner": {...}}): ${advice}`);
  // Older versions connected as the cluster's superuser: it stays for administration, the broker gets its own role
  const migrated = { admin: old, owner: { user: OWNER_ROLE, password: randomBytes(24).toString('hex') } };
  await writeCredentials(file, migrated);
  logger.info({ file, admin: old.user, owner: OWNER_ROLE }, 'embedded postgres: added the broker\'s own role to the credentials of a cluster from an older version');
  return migrated;
}

/** A SCRAM-SHA-256 verifier for `password` (RFC 5802/7677, as PostgreSQL stores it), so the password itself is never sent in SQL. */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const storedKey = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest('base64');
  const serverKey = createHmac('sha256', salted).update('Server Key').digest('base64');
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey}:${serverKey}`;
}

// Everything the superuser owns in database tern, outside the system schemas, passes to the broker's role
// (REASSIGN OWNED cannot be used: the bootstrap superuser also owns the system's objects). Sequences
// that belong to a column follow their table.
const TRANSFER_OWNERSHIP = `
DO $$
DECLARE
  me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
  r record;
BEGIN
  FOR r IN
    SELECT 0 AS ord, format('ALTER SCHEMA %I OWNER TO ${OWNER_ROLE}', n.nspname) AS stmt
      FROM pg_namespace n WHERE n.nspowner = me AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 1, format('ALTER %s %s OWNER TO ${OWNER_ROLE}',
        CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
        c.oid::regclass)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relowner = me AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT 2, format('ALTER ROUTINE %s OWNER TO ${OWNER_ROLE}', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.proowner = me AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 3, format('ALTER %s %s OWNER TO ${OWNER_ROLE}', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typowner = me AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND t.typtype IN ('e', 'd')
    ORDER BY ord
  LOOP
    EXECUTE r.stmt;
  END LOOP;
END $$`;

/**
 * As the superuser: the broker's role exists with exactly its rights and its password, database `tern`
 * exists and it owns the database and everything in it (clusters of older versions are migrated here).
 * Returns the URL of `tern` as that role.
 */
async function ensureDatabase(c: Credentials, port: number, pgDir: string, advice: string): Promise<string> {
  const at = (r: Role, db: string): string => `postgres://${encodeURIComponent(r.user)}:${encodeURIComponent(r.password)}@${HOST}:${port}/${db}`;
  let client = new pg.Client({ connectionString: at(c.admin, 'postgres') });
  try {
    await client.connect();
    const exists = (await client.query('select 1 from pg_roles where rolname = $1', [OWNER_ROLE])).rowCount !== 0;
    const rights = 'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS';
    await client.query(`${exists ? 'ALTER' : 'CREATE'} ROLE ${OWNER_ROLE} WITH ${rights} PASSWORD ${client.escapeLiteral(scramVerifier(c.owner.password))}`);
    if ((await client.query('select 1 from pg_database where datname = $1', [DATABASE])).rowCount === 0) {
      // 42P04 duplicate_database: created concurrently, which is fine
      await client.query(`create database ${DATABASE} owner ${OWNER_ROLE}`).catch((err: { code?: string }) => { if (err.code !== '42P04') throw err; });
    }
    await client.end();
    client = new pg.Client({ connectionString: at(c.admin, DATABASE) });
    await client.connect();
    // Objects first, database last: an interrupted migration is finished by the next start
    await client.query(TRANSFER_OWNERSHIP);
    await client.query(`alter database ${DATABASE} owner to ${OWNER_ROLE}`);
  } catch (err) {
    throw new Error(`embedded postgres: cannot use the server on ${HOST}:${port} (${pgDir}): ${(err as Error).message}; ${advice}`, { cause: err });
  } finally {
    await client.end().catch(() => {}); // nothing to do if closing a failed connection fails too
  }
  return at(c.owner, DATABASE);
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
