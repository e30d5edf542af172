// `passwd` subcommand: argument handling, file updates, atomic 0600 writes, exit codes.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { parsePasswordFile, verifyPassword } from '../../../src/auth/passwords.ts';
import { passwdCommand } from '../../../src/cli/passwd.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function passwd(argv: string[], stdinText = ''): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => { out += c.toString(); });
  stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const code = await passwdCommand(argv, { stdin: Readable.from(stdinText === '' ? [] : [Buffer.from(stdinText)]), stdout, stderr });
  return { code, stdout: out, stderr: err };
}

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-passwd-'));
  file = join(dir, 'passwords');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function users(): Map<string, string> {
  return parsePasswordFile(readFileSync(file, 'utf8'));
}

describe('passwd', () => {
  test('-c -b creates the file with mode 0600 and one verifiable user', async () => {
    const r = await passwd(['-c', '-b', file, 'alice', 'pw1']);
    assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const u = users();
    assert.deepEqual([...u.keys()], ['alice']);
    assert.equal(await verifyPassword(u.get('alice')!, 'pw1'), true);
    assert.deepEqual(readdirSync(dir), ['passwords'], 'no temp file left behind');
  });

  test('adding and updating keep the other users; -c overwrites', async () => {
    assert.equal((await passwd(['-c', '-b', file, 'alice', 'pw1'])).code, 0);
    assert.equal((await passwd(['-b', file, 'bob', 'pw2'])).code, 0);
    const before = users();
    assert.equal((await passwd(['-b', file, 'alice', 'pw3'])).code, 0);
    const after = users();
    assert.deepEqual([...after.keys()], ['alice', 'bob']);
    assert.equal(after.get('bob'), before.get('bob'));
    assert.equal(await verifyPassword(after.get('alice')!, 'pw3'), true);
    assert.equal(await verifyPassword(after.get('alice')!, 'pw1'), false);
    assert.equal((await passwd(['-c', '-b', file, 'carol', 'pw4'])).code, 0);
    assert.deepEqual([...users().keys()], ['carol']);
  });

  test('the password comes from the first line of stdin without -b', async () => {
    assert.equal((await passwd(['-c', file, 'alice'], 'from stdin\r\nsecond line\n')).code, 0);
    const h = users().get('alice')!;
    assert.equal(await verifyPassword(h, 'from stdin'), true);
    assert.equal((await passwd([file, 'bob'], 'no newline')).code, 0);
    assert.equal(await verifyPassword(users().get('bob')!, 'no newline'), true);
  });

  test('-D deletes a user; an unknown user is an error that leaves the file alone', async () => {
    await passwd(['-c', '-b', file, 'alice', 'pw1']);
    await passwd(['-b', file, 'bob', 'pw2']);
    assert.equal((await passwd(['-D', file, 'alice'])).code, 0);
    assert.deepEqual([...users().keys()], ['bob']);
    const text = readFileSync(file, 'utf8');
    const r = await passwd(['-D', file, 'alice']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `passwd: user "alice" is not in ${file}\n`);
    assert.equal(readFileSync(file, 'utf8'), text);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  test('an existing file with looser permissions becomes 0600 on rewrite', async () => {
    await passwd(['-c', '-b', file, 'alice', 'pw1']);
    const text = readFileSync(file, 'utf8');
    rmSync(file);
    writeFileSync(file, text, { mode: 0o644 });
    assert.equal((await passwd(['-b', file, 'bob', 'pw2'])).code, 0);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  test('failures: exit 1 with a clear message', async () => {
    let r = await passwd(['-b', file, 'alice', 'pw']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `passwd: ${file} does not exist (use -c to create it)\n`);
    r = await passwd(['-D', file, 'alice']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not exist/);
    r = await passwd(['-c', '-b', file, 'a:b', 'pw']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'passwd: the user name contains \':\': "a:b"\n');
    r = await passwd(['-c', '-b', file, '', 'pw']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'passwd: the user name is empty: ""\n');
    r = await passwd(['-c', file, 'alice'], '');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'passwd: no password on stdin\n');
    r = await passwd(['-c', '-b', file, 'alice', '']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'passwd: the password is empty\n');
    assert.deepEqual(readdirSync(dir), [], 'nothing written by a failed command');
  });

  test('a malformed existing file is reported with its line, not overwritten', async () => {
    writeFileSync(file, '# ok\nalice:$6$mosquitto$hash\n', { mode: 0o600 });
    const r = await passwd(['-b', file, 'bob', 'pw']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^passwd: .*password file line 2: unsupported or malformed hash/);
    assert.equal(readFileSync(file, 'utf8'), '# ok\nalice:$6$mosquitto$hash\n');
  });

  test('usage errors: exit 2 and the usage text', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /expected <file> <username>, got 0/],
      [[file], /expected <file> <username>, got 1/],
      [[file, 'alice', 'pw'], /a password argument needs -b/],
      [['-b', file, 'alice'], /-b needs <file> <username> <password>/],
      [['-c', '-D', file, 'alice'], /-c and -D cannot be used together/],
      [['-D', '-b', file, 'alice', 'pw'], /-D takes no password/],
      [['-x', file, 'alice'], /unknown option -x/],
    ];
    for (const [argv, message] of cases) {
      const r = await passwd(argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: passwd/);
    }
    assert.deepEqual(readdirSync(dir), []);
  });

  test('-h prints the usage to stdout', async () => {
    const r = await passwd(['-h']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: passwd/);
    assert.equal(r.stderr, '');
  });

  test("'--' ends the options, so a user name may start with '-'", async () => {
    assert.equal((await passwd(['-c', '-b', '--', file, '-dash', 'pw'])).code, 0);
    assert.deepEqual([...users().keys()], ['-dash']);
  });
});
