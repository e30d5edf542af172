// Password hashes and the password file (`user:hash` lines, as mosquitto_passwd writes them, but
// with scrypt hashes). node:crypto only.
//
// Hash format: `$scrypt$N=16384,r=8,p=1$<salt base64>$<key base64>`. New hashes use N=2^14, r=8,
// p=1 (16 MiB, tens of milliseconds), a 16-byte random salt and a 32-byte key. That cost is
// deliberate: a verification runs once per CONNECT that presents a password, so tens of
// milliseconds are invisible to a client yet make offline guessing of a leaked file expensive.
// Verification takes the parameters from the stored string, so they can be raised later without
// breaking old lines, but only within N ∈ {2^14 … 2^20}, r ∈ 1…32, p ∈ 1…16 and, together,
// N·r·p ≤ 2^20 (8× the default work) and 128·N·r ≤ 128 MiB: each bound alone still allows
// minutes and gigabytes (N=2^20, r=32, p=16), so the products keep a crafted line from making a
// CONNECT cost seconds. A hash outside that (or malformed) verifies as false rather than
// throwing, so a bad line locks one user out instead of costing unbounded time or memory.
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

const DEFAULT = { N: 16384, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Stored keys shorter than this are refused (a short key is easier to collide), longer are pointless. */
const MIN_KEY_BYTES = 16;
const MAX_KEY_BYTES = 64;
/** Bound on N·r·p, which verification time is proportional to: 8× the default N·r·p of 2^17. */
const MAX_WORK = 2 ** 20;
/** Bound on N·r: scrypt needs about 128·N·r bytes, so this keeps one verification under 128 MiB. */
const MAX_N_TIMES_R = 2 ** 20;

interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** scrypt needs about 128·N·r bytes; Node refuses above `maxmem` (32 MiB by default), so say what we allow. */
function maxmemFor(N: number, r: number): number {
  return 128 * N * r * 2;
}

/** Canonical base64 (with padding) of at least one byte, or undefined. */
function decodeBase64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  // Buffer.from ignores what it cannot use; the round trip rejects non-canonical text
  return bytes.length > 0 && bytes.toString('base64') === text ? bytes : undefined;
}

function parseHash(stored: string): ScryptHash | undefined {
  const parts = stored.split('$');
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'scrypt') return undefined;
  const params = /^N=([1-9][0-9]{0,7}),r=([1-9][0-9]?),p=([1-9][0-9]?)$/.exec(parts[2]!);
  if (params === null) return undefined;
  const N = Number(params[1]);
  const r = Number(params[2]);
  const p = Number(params[3]);
  if (N < 2 ** 14 || N > 2 ** 20 || (N & (N - 1)) !== 0) return undefined; // a power of two in range
  if (r > 32 || p > 16) return undefined;
  if (N * r * p > MAX_WORK || N * r > MAX_N_TIMES_R) return undefined; // time ∝ N·r·p, memory ≈ 128·N·r
  const salt = decodeBase64(parts[3]!);
  const key = decodeBase64(parts[4]!);
  if (salt === undefined || key === undefined || key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) return undefined;
  return { N, r, p, salt, key };
}

/** True if `stored` is a hash this module can verify (format and parameter limits). */
export function isSupportedHash(stored: string): boolean {
  return parseHash(stored) !== undefined;
}

/** A new hash of `password` (strings are hashed as UTF-8). Synchronous: for the CLI and tests. */
export function hashPassword(password: string | Buffer): string {
  const salt = randomBytes(SALT_BYTES);
  const key = scryptSync(password, salt, KEY_BYTES, { ...DEFAULT, maxmem: maxmemFor(DEFAULT.N, DEFAULT.r) });
  return `$scrypt$N=${DEFAULT.N},r=${DEFAULT.r},p=${DEFAULT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * Does `password` match `stored`? Never rejects: a malformed or out-of-range hash, or a scrypt
 * failure, is false. Asynchronous so that the tens of milliseconds of hashing run on the libuv pool, not
 * on the event loop; the comparison is constant-time.
 */
export function verifyPassword(stored: string, password: string | Buffer): Promise<boolean> {
  const h = parseHash(stored);
  if (h === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      scrypt(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmemFor(h.N, h.r) }, (err, derived) => {
        resolve(err === null && timingSafeEqual(derived, h.key));
      });
    } catch {
      resolve(false); // scrypt validates its options synchronously
    }
  });
}

/** A line of the password file that cannot be parsed; `line` is 1-based. */
export class PasswordFileError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(`password file line ${line}: ${message}`);
    this.name = 'PasswordFileError';
    this.line = line;
  }
}

/**
 * Why `username` cannot be stored in a password file, or undefined if it can. The line format
 * forbids ':' (the separator) and line breaks; lines are trimmed and '#' starts a comment, so a
 * name may not start with '#' nor start or end with whitespace.
 */
export function usernameProblem(username: string): string | undefined {
  if (username.length === 0) return 'the user name is empty';
  if (username.includes(':')) return "the user name contains ':'";
  if (/[\r\n\0]/.test(username)) return 'the user name contains a line break or NUL';
  if (username.startsWith('#')) return "the user name starts with '#'";
  if (username.trim() !== username) return 'the user name starts or ends with whitespace';
  return undefined;
}

/**
 * `user:hash` lines → map. Blank lines and lines starting with '#' are skipped; a line is split at
 * its first ':'. A duplicate user or a hash this module cannot verify (a mosquitto `$6$`/`$7$`
 * hash, say) is an error, so a file that would lock users out fails loudly at load.
 */
export function parsePasswordFile(text: string): Map<string, string> {
  const users = new Map<string, string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim(); // also drops a '\r' of CRLF files
    if (line.length === 0 || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 0) throw new PasswordFileError(lineNo, "expected user:hash (no ':')");
    const username = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    const problem = usernameProblem(username);
    if (problem !== undefined) throw new PasswordFileError(lineNo, problem);
    if (users.has(username)) throw new PasswordFileError(lineNo, `user ${JSON.stringify(username)} is listed twice`);
    if (!isSupportedHash(hash)) throw new PasswordFileError(lineNo, `unsupported or malformed hash for user ${JSON.stringify(username)} (expected $scrypt$N=…,r=…,p=…$salt$key)`);
    users.set(username, hash);
  }
  return users;
}

/** Map → file text, one `user:hash` line each in the map's order; throws RangeError for a name the format cannot hold. */
export function formatPasswordFile(users: ReadonlyMap<string, string>): string {
  let out = '';
  for (const [username, hash] of users) {
    const problem = usernameProblem(username);
    if (problem !== undefined) throw new RangeError(`${problem}: ${JSON.stringify(username)}`);
    if (/[\r\n]/.test(hash)) throw new RangeError(`the hash of ${JSON.stringify(username)} contains a line break`);
    out += `${username}:${hash}\n`;
  }
  return out;
}
