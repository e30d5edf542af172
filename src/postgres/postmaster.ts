// Facts about a PostgreSQL server process on a data directory, read from postmaster.pid and (on Linux)
// /proc: is it alive, is it postgres, who owns it, which processes still run in it; and stopping it by PID.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** The parent of pid if it is a node process: a server whose broker is alive is not an orphan to adopt (Linux only). */
export function liveNodeParent(pid: number): number | undefined {
  try {
    const ppid = Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]);
    return readFileSync(`/proc/${ppid}/comm`, 'utf8').trim() === 'node' ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/** Live postgres processes whose working directory is pgDir, i.e. a server's (Linux; elsewhere none are found). */
export function postgresProcessesIn(pgDir: string): number[] {
  if (process.platform !== 'linux') return [];
  const dir = realpathSync(pgDir);
  return readdirSync('/proc').filter((name) => {
    try {
      return /^\d+$/.test(name) && readlinkSync(`/proc/${name}/cwd`) === dir && isPostgres(Number(name));
    } catch {
      return false; // gone meanwhile, or not ours to inspect
    }
  }).map(Number);
}

/** postmaster.pid lines: pid, data dir, start time, port, socket dir, listen address, shared memory key, status. */
export function readPidFile(pgDir: string): { pid: number; port: number; status: string } | undefined {
  let lines: string[];
  try { lines = readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n'); } catch { return undefined; }
  return { pid: Number(lines[0]), port: Number(lines[3]), status: (lines[7] ?? '').trim() };
}

/** Whether pid is a live (not zombie) process named postgres. */
export function isPostgres(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    if (process.platform === 'linux') return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
    return path.basename(execFileSync('ps', ['-p', String(pid), '-o', 'comm='], { encoding: 'utf8' }).trim()) === 'postgres';
  } catch {
    return false;
  }
}

/** Whether pid is a live process; a zombie (dead, not yet reaped) counts as gone. */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // An orphaned server is reaped by PID 1; where PID 1 does not reap, a dead one lingers as a zombie
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return process.platform !== 'linux';
  }
}

/** SIGINT (fast shutdown) and wait for the process to exit; SIGQUIT (immediate, recovers on next start) after 20 s. */
export async function stopServer(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return; // already gone
  }
  for (let waitedMs = 0; isAlive(pid); waitedMs += 25) {
    if (waitedMs === 20_000) process.kill(pid, 'SIGQUIT');
    await sleep(25);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
