// `passwd`: manage a password file, like mosquitto_passwd (hashes are scrypt, see auth/passwords.ts).
//
//   passwd [-c] [-b] <file> <username> [password]     add or update a user
//   passwd -D <file> <username>                       delete a user
//   -c  create the file, or overwrite it with only this user
//   -D  delete the user (an error if it is not in the file)
//   -b  take the password from the command line (visible in `ps` and shell history); without -b
//       it is the first line of stdin, without its line break (no prompt-twice, no echo control:
//       pipe it in or use -b)
// Exit codes: 0 done, 1 failed (missing file, unknown user, bad user name, unreadable file, I/O),
// 2 usage error. The file is replaced atomically (temp file in the same directory, then rename) with
// mode 0600, so a reader never sees half a file and the hashes are not world-readable. Renaming over
// a symbolic link replaces the link, not its target.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { formatPasswordFile, hashPassword, parsePasswordFile, PasswordFileError, usernameProblem } from '../auth/passwords.ts';

export interface PasswdIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = `usage: passwd [-c] [-b] <file> <username> [password]
       passwd -D <file> <username>
  -c  create the file (or overwrite it) with only this user
  -D  delete the user
  -b  read the password from the command line instead of the first line of stdin
`;

/** Bad arguments: exit code 2. */
class UsageError extends Error {}
/** The command could not be done: exit code 1. */
class CommandError extends Error {}

interface Options {
  create: boolean;
  remove: boolean;
  batch: boolean;
  file: string;
  username: string;
  password: string | undefined;
}

function parseArgs(argv: string[]): Options | 'help' {
  let create = false;
  let remove = false;
  let batch = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { i++; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    switch (arg) {
      case '-c': create = true; break;
      case '-D': remove = true; break;
      case '-b': batch = true; break;
      case '-h': case '--help': return 'help';
      default: throw new UsageError(`unknown option ${arg}`);
    }
  }
  const rest = argv.slice(i);
  if (create && remove) throw new UsageError('-c and -D cannot be used together');
  if (remove && batch) throw new UsageError('-D takes no password, so no -b');
  const wanted = batch ? 3 : 2;
  if (rest.length !== wanted) {
    throw new UsageError(batch ? '-b needs <file> <username> <password>' : `expected <file> <username>, got ${rest.length} argument(s)${rest.length === 3 ? ' (a password argument needs -b)' : ''}`);
  }
  return { create, remove, batch, file: rest[0]!, username: rest[1]!, password: batch ? rest[2]! : undefined };
}

/** The first line of `stdin` without its line break, or undefined at end of input with nothing read. */
async function readLine(stdin: NodeJS.ReadableStream): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let sawData = false;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk as Uint8Array);
    sawData = true;
    const nl = buf.indexOf(0x0a);
    if (nl >= 0) {
      chunks.push(buf.subarray(0, nl));
      break; // the rest of stdin is not ours to read
    }
    chunks.push(buf);
  }
  if (!sawData) return undefined;
  return Buffer.concat(chunks).toString('utf8').replace(/\r$/, '');
}

/** The file's users; a missing file is an empty map only when `missingOk`. */
async function readUsers(file: string, missingOk: boolean): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      if (missingOk) return new Map();
      throw new CommandError(`${file} does not exist (use -c to create it)`);
    }
    throw new CommandError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return parsePasswordFile(text);
  } catch (err) {
    if (err instanceof PasswordFileError) throw new CommandError(`${file}: ${err.message}`);
    throw err;
  }
}

/** Write `text` to `file` atomically, mode 0600. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.chmod(0o600); // the umask may have narrowed it further; make it exactly 0600
      await fh.writeFile(text, 'utf8');
      await fh.sync(); // the data is on disk before the rename makes it the file
    } finally {
      await fh.close();
    }
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined); // best effort: the temp file may not exist
    throw new CommandError(`cannot write ${file}: ${(err as Error).message}`);
  }
}

async function run(opts: Options, io: PasswdIo): Promise<void> {
  const problem = usernameProblem(opts.username);
  if (problem !== undefined) throw new CommandError(`${problem}: ${JSON.stringify(opts.username)}`);

  if (opts.remove) {
    const users = await readUsers(opts.file, false);
    if (!users.delete(opts.username)) throw new CommandError(`user ${JSON.stringify(opts.username)} is not in ${opts.file}`);
    await writeAtomically(opts.file, formatPasswordFile(users));
    return;
  }

  // read the existing file before asking for the password, so a missing file fails fast
  const users = opts.create ? new Map<string, string>() : await readUsers(opts.file, false);
  let password = opts.password;
  if (password === undefined) {
    if ((io.stdin as { isTTY?: boolean }).isTTY === true) io.stderr.write('Password: ');
    password = await readLine(io.stdin);
    if (password === undefined) throw new CommandError('no password on stdin');
  }
  if (password.length === 0) throw new CommandError('the password is empty');
  users.set(opts.username, hashPassword(password));
  await writeAtomically(opts.file, formatPasswordFile(users));
}

/** Run `passwd` with `argv` (the arguments after the subcommand name); resolves to the exit code. */
export async function passwdCommand(argv: string[], io: PasswdIo): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`passwd: ${err.message}\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    io.stdout.write(USAGE);
    return 0;
  }
  try {
    await run(opts, io);
    return 0;
  } catch (err) {
    // anything else (a stdin error, say) is a failure too, not a crash with a stack trace
    io.stderr.write(`passwd: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
