// scrypt password hashes and the `user:hash` password file.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { scryptSync } from 'node:crypto';
import {
  formatPasswordFile, hashPassword, isSupportedHash, parsePasswordFile, PasswordFileError, usernameProblem, verifyPassword,
} from '../../../src/auth/passwords.ts';

/** A hash with chosen parameters, made the slow obvious way. */
function makeHash(password: string, N: number, r: number, p: number, salt = Buffer.alloc(16, 7), keyBytes = 32): string {
  const key = scryptSync(password, salt, keyBytes, { N, r, p, maxmem: 256 * N * r });
  return `$scrypt$N=${N},r=${r},p=${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

describe('hashPassword / verifyPassword', () => {
  const stored = hashPassword('s3cret');

  test('format: $scrypt$N=16384,r=8,p=1$<16-byte salt>$<32-byte key>', () => {
    const m = /^\$scrypt\$N=16384,r=8,p=1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
    assert.ok(m, stored);
    assert.equal(Buffer.from(m[1]!, 'base64').length, 16);
    assert.equal(Buffer.from(m[2]!, 'base64').length, 32);
  });

  test('the key is scrypt of the password with the stored salt', () => {
    const [, , , salt] = stored.split('$');
    assert.equal(makeHash('s3cret', 16384, 8, 1, Buffer.from(salt!, 'base64')), stored);
  });

  test('a fresh salt each time', () => {
    assert.notEqual(hashPassword('s3cret'), stored);
  });

  test('right password → true, wrong → false', async () => {
    assert.equal(await verifyPassword(stored, 's3cret'), true);
    assert.equal(await verifyPassword(stored, 's3cret '), false);
    assert.equal(await verifyPassword(stored, 'S3cret'), false);
    assert.equal(await verifyPassword(stored, ''), false);
  });

  test('strings are UTF-8; a Buffer password verifies the same', async () => {
    const h = hashPassword('pässwörd😀');
    assert.equal(await verifyPassword(h, Buffer.from('pässwörd😀', 'utf8')), true);
    assert.equal(await verifyPassword(h, Buffer.from('pässwörd😀', 'latin1')), false);
  });

  test('an empty password can be hashed and verified', async () => {
    assert.equal(await verifyPassword(hashPassword(''), ''), true);
  });

  test('parameters are read from the stored string (within limits)', async () => {
    assert.equal(await verifyPassword(makeHash('pw', 2 ** 15, 1, 2), 'pw'), true);
    assert.equal(await verifyPassword(makeHash('pw', 2 ** 14, 2, 1, Buffer.from('salt'), 16), 'pw'), true);
  });

  const bad: Array<[string, string]> = [
    [makeHash('pw', 2 ** 13, 8, 1), 'N below 2^14'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('N=16384', 'N=2097152'), 'N above 2^20'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('N=16384', 'N=20000'), 'N not a power of two'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('r=8', 'r=33'), 'r above 32'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('r=8', 'r=0'), 'r zero'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('p=1', 'p=17'), 'p above 16'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('p=1', 'p=01'), 'leading zero'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('N=16384,r=8,p=1', 'r=8,N=16384,p=1'), 'parameters out of order'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('$scrypt$', '$SCRYPT$'), 'algorithm name'],
    [makeHash('pw', 2 ** 14, 8, 1, Buffer.alloc(16, 7), 8), 'key shorter than 16 bytes'],
    [`${makeHash('pw', 2 ** 14, 8, 1)}$`, 'extra field'],
    [makeHash('pw', 2 ** 14, 8, 1).replace(/\$[^$]*$/, '$'), 'empty key'],
    [makeHash('pw', 2 ** 14, 8, 1).replace(/=\$/, '$'), 'salt without its padding'],
    [makeHash('pw', 2 ** 14, 8, 1).replace(/\$([^$]*)$/, '$$!$1'), 'non-base64 key'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('N=16384,r=8', 'N=1048576,r=2'), 'N·r·p above 2^20 (each parameter in range)'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('r=8,p=1', 'r=32,p=16'), 'r=32 and p=16 together'],
    [makeHash('pw', 2 ** 14, 8, 1).replace('r=8,p=1', 'r=8,p=9'), 'N·r·p just above 2^20'],
    ['$6$abc$def', 'mosquitto sha512 hash'],
    ['', 'empty'],
    ['plaintext', 'plain text'],
  ];
  for (const [hash, why] of bad) {
    test(`${why} → false, never throws`, async () => {
      assert.equal(isSupportedHash(hash), false);
      assert.equal(await verifyPassword(hash, 'pw'), false);
    });
  }

  test('at the combined limits: supported', () => {
    const base = makeHash('pw', 2 ** 14, 8, 1);
    assert.equal(isSupportedHash(base.replace('N=16384,r=8', 'N=1048576,r=1')), true, 'N=2^20, r=1, p=1');
    assert.equal(isSupportedHash(base.replace('r=8,p=1', 'r=8,p=8')), true, 'N·r·p = 2^20');
    assert.equal(isSupportedHash(base.replace('r=8,p=1', 'r=1,p=16')), true, 'p=16');
  });

  test('the hashes the bad cases start from do verify (the cases test what they say)', async () => {
    assert.equal(await verifyPassword(makeHash('pw', 2 ** 14, 8, 1), 'pw'), true);
  });
});

describe('password file', () => {
  const h1 = hashPassword('one');
  const h2 = hashPassword('two');

  test('parse: user:hash lines, comments, blank lines, CRLF', () => {
    const users = parsePasswordFile(`# users\r\n\r\nalice:${h1}\r\n  # indented comment\n bob smith:${h2}\n`);
    assert.deepEqual([...users], [['alice', h1], ['bob smith', h2]]);
  });

  test('format then parse round-trips, in map order', () => {
    const users = new Map([['zed', h1], ['amy', h2]]);
    const text = formatPasswordFile(users);
    assert.equal(text, `zed:${h1}\namy:${h2}\n`);
    assert.deepEqual(parsePasswordFile(text), users);
    assert.equal(formatPasswordFile(new Map()), '');
  });

  const errors: Array<[string, number, RegExp]> = [
    [`alice:${h1}\nbob\n`, 2, /no ':'/],
    [`:${h1}\n`, 1, /empty/],
    [`alice:${h1}\n\nalice:${h2}\n`, 3, /listed twice/],
    ['alice:$6$salt$hash\n', 1, /unsupported or malformed hash/],
    ['alice:\n', 1, /unsupported or malformed hash/],
  ];
  for (const [text, line, message] of errors) {
    test(`error on line ${line}: ${message}`, () => {
      assert.throws(() => parsePasswordFile(text), (err: unknown) => {
        assert.ok(err instanceof PasswordFileError);
        assert.equal(err.line, line);
        assert.match(err.message, message);
        assert.match(err.message, new RegExp(`^password file line ${line}: `));
        return true;
      });
    });
  }

  test('a user name after the first colon is part of the hash, not the name', () => {
    assert.throws(() => parsePasswordFile(`a:b:${h1}\n`), PasswordFileError);
  });

  test('formatting a name the format cannot hold throws', () => {
    for (const name of ['', 'a:b', 'a\nb', '#x', ' x']) {
      assert.throws(() => formatPasswordFile(new Map([[name, h1]])), RangeError, JSON.stringify(name));
    }
  });

  test('usernameProblem', () => {
    assert.equal(usernameProblem('alice'), undefined);
    assert.equal(usernameProblem('a b'), undefined);
    assert.equal(usernameProblem('a:b'), "the user name contains ':'");
    assert.equal(usernameProblem(''), 'the user name is empty');
  });
});
