// A PostgreSQL server for the long runs started outside the test runner (scripts/fuzz.ts,
// scripts/crash-loop.ts): DATABASE_URL if set, else the broker's own embedded server in a
// temporary directory, stopped and deleted afterwards.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/postgres/embedded.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: (o: object, m?: string) => process.stderr.write(`postgres: ${m ?? ''} ${JSON.stringify(o)}\n`) };

/** Run `fn` with the URL of a database it may use as it likes. */
export async function withDatabase<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const given = process.env['DATABASE_URL'];
  if (given) return fn(given);
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-long-run-'));
  try {
    const db = await startEmbeddedPostgres({ dataDir: dir, logger: quiet });
    try {
      return await fn(db.url);
    } finally {
      await db.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `--name value` pairs from argv, checked against the allowed names. */
export function parseFlags(argv: string[], allowed: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--/, '').split('=')[0]!;
    if (!a.startsWith('--') || !allowed.includes(name)) throw new Error(`unknown argument ${a} (allowed: ${allowed.map((n) => `--${n}`).join(' ')})`);
    const value = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
    if (value === undefined) throw new Error(`${a} needs a value`);
    out.set(name, value);
  }
  return out;
}
