// Access keys: the two shared secrets that sign client tokens and REST requests, as Azure Web
// PubSub has them (spec §3.1, §6.1). Two keys so that one can be rotated while clients signed
// with the other keep working. They live in `<dir>/access-keys.json` (mode 0600), created with
// random keys on first start; keys given by flag or env override the file and are never written.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface AccessKeys {
  primary: string;
  secondary: string;
}

const FILE_NAME = 'access-keys.json';
/** Shorter keys are guessable; Azure's are 44 characters. */
const MIN_KEY_LENGTH = 16;

/** A new random key: 32 bytes, base64 (44 characters, like Azure's). */
export function generateAccessKey(): string {
  return randomBytes(32).toString('base64');
}

/** Throws if `key` cannot be used: too short to be a secret, or unusable in a connection string. */
function checkKey(key: unknown, what: string): asserts key is string {
  if (typeof key !== 'string') throw new Error(`${what} must be a string`);
  if (key.length < MIN_KEY_LENGTH) throw new Error(`${what} must be at least ${MIN_KEY_LENGTH} characters long`);
  // ';' separates the fields of a connection string (spec §6.1): such a key could not be handed out.
  if (key.includes(';')) throw new Error(`${what} must not contain ';'`);
}

/** The keys stored in `file`, validated; undefined when the file does not exist. */
function readKeysFile(file: string): AccessKeys | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the access key file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`the access key file ${file} is not valid JSON; fix it or delete it to generate new keys`);
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw new Error(`the access key file ${file} must hold {"primary": "...", "secondary": "..."}`);
  }
  const { primary, secondary } = parsed as Record<string, unknown>;
  checkKey(primary, `"primary" in ${file}`);
  checkKey(secondary, `"secondary" in ${file}`);
  return { primary, secondary };
}

/** A temp file next to `file`, holding `keys`, flushed to disk, mode 0600. */
function writeTemp(file: string, keys: AccessKeys): string {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ primary: keys.primary, secondary: keys.secondary }, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return temp;
}

/**
 * The keys to use: the file's (created with random keys when missing), each overridden by a key
 * given explicitly. When both keys are given the file is not needed and not touched.
 */
export function loadOrCreateAccessKeys(
  dir: string,
  given: { primary?: string; secondary?: string },
): { keys: AccessKeys; created: boolean; file: string } {
  const file = join(dir, FILE_NAME);
  if (given.primary !== undefined) checkKey(given.primary, 'the primary access key');
  if (given.secondary !== undefined) checkKey(given.secondary, 'the secondary access key');
  if (given.primary !== undefined && given.secondary !== undefined) {
    return { keys: { primary: given.primary, secondary: given.secondary }, created: false, file };
  }
  let stored = readKeysFile(file);
  let created = false;
  if (stored === undefined) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fresh = { primary: generateAccessKey(), secondary: generateAccessKey() };
    const temp = writeTemp(file, fresh);
    try {
      // link, unlike rename, fails if the file appeared meanwhile (another process starting on the
      // same directory): then both use the keys that won, never two different sets.
      linkSync(temp, file);
      stored = fresh;
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      stored = readKeysFile(file);
      if (stored === undefined) throw new Error(`the access key file ${file} vanished while being created`);
    } finally {
      unlinkSync(temp);
    }
  }
  return {
    keys: { primary: given.primary ?? stored.primary, secondary: given.secondary ?? stored.secondary },
    created,
    file,
  };
}

/**
 * Replaces one key in the file with a new random one and returns the file's keys. The other key
 * is left as it is, so tokens signed with it stay valid. The file is replaced atomically: a crash
 * leaves either the old or the new keys, never a torn file.
 */
export function regenerateAccessKey(dir: string, which: 'primary' | 'secondary'): AccessKeys {
  if (which !== 'primary' && which !== 'secondary') throw new Error(`unknown access key "${String(which)}"`);
  const file = join(dir, FILE_NAME);
  const current = readKeysFile(file);
  if (current === undefined) throw new Error(`there is no access key file ${file} to regenerate a key in`);
  const next: AccessKeys = { ...current, [which]: generateAccessKey() };
  const temp = writeTemp(file, next);
  try {
    renameSync(temp, file);
  } catch (err) {
    unlinkSync(temp);
    throw err;
  }
  return next;
}

/**
 * An Azure-style connection string for `endpoint` (spec §6.1), e.g.
 * `Endpoint=http://127.0.0.1;Port=8080;AccessKey=…;Version=1.0;`. The SDK rebuilds the URL from
 * Endpoint and Port, so only scheme, host and port are carried: a path could not be.
 */
export function connectionString(endpoint: URL | string, key: string): string {
  const url = new URL(endpoint);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`the endpoint ${url.href} must be http or https`);
  if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.password !== '') {
    throw new Error(`the endpoint ${url.origin} must not carry a path, query or credentials`);
  }
  checkKey(key, 'the access key');
  const port = url.port === '' ? '' : `Port=${url.port};`;
  return `Endpoint=${url.protocol}//${url.hostname};${port}AccessKey=${key};Version=1.0;`;
}

/**
 * The parts of a connection string, read as the SDK reads it (spec §6.1): fields split on ';'
 * and the first '=', names case-insensitive, unknown names ignored, `https://` assumed when
 * Endpoint has no scheme, Port overriding the URL's port. `endpoint` is the resulting URL
 * without a trailing '/'; `port` is set when a port is explicit (Port= or in the URL).
 */
export function parseConnectionString(cs: string): { endpoint: string; accessKey: string; port?: number } {
  const fields = new Map<string, string>();
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    fields.set(part.slice(0, eq).toLowerCase(), part.slice(eq + 1));
  }
  let endpoint = fields.get('endpoint');
  if (!endpoint) throw new TypeError('connection string missing endpoint');
  if (!endpoint.startsWith('http')) endpoint = `https://${endpoint}`;
  const accessKey = fields.get('accesskey');
  if (!accessKey) throw new TypeError('connection string missing access key');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TypeError('connection string endpoint is not a valid URL');
  }
  const portField = fields.get('port');
  if (portField !== undefined && portField !== '') {
    if (!/^\d{1,5}$/.test(portField) || Number(portField) > 65535) throw new TypeError(`connection string port "${portField}" is not a port number`);
    url.port = portField;
  }
  // The URL drops a port that is the scheme's default: report it anyway when it was explicit.
  const explicit = portField !== undefined && portField !== '' ? Number(portField) : url.port !== '' ? Number(url.port) : undefined;
  const result: { endpoint: string; accessKey: string; port?: number } = { endpoint: url.href.replace(/\/$/, ''), accessKey };
  if (explicit !== undefined) result.port = explicit;
  return result;
}
