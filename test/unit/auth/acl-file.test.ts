// mosquitto-style ACL file: parsing, publish/subscribe checks, deny, patterns, filter coverage.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AclParseError, filterCovers, filtersOverlap, parseAcl } from '../../../src/auth/acl-file.ts';

describe('filterCovers', () => {
  const cases: Array<[string, string, boolean]> = [
    // [acl filter, subscribe filter, covers]
    ['a/#', 'a/b/+', true],
    ['a/#', 'a/#', true],
    ['a/#', 'a', true], // '#' includes the parent level
    ['a/#', 'a/b', true],
    ['a/#', 'b/#', false],
    ['a/#', '#', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/+', true],
    ['a/+', 'a/#', false],
    ['a/+', 'a/b/c', false],
    ['a/+', 'a', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/+', false],
    ['a/b', 'a/b/c', false],
    ['#', 'a/b/+', true],
    ['#', '#', true],
    ['#', '+/x', true],
    ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['#', '$SYS/#', false],
    ['+/#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['$SYS/#', '#', false],
    ['a/+/#', 'a/#', false],
    ['a/+/#', 'a/b/#', true],
    ['a/+/c', 'a/+/c', true],
    ['+/+', '+/+', true],
    ['+', '', true], // empty topic levels are levels too
  ];
  for (const [acl, sub, expected] of cases) {
    test(`${acl} ${expected ? 'covers' : 'does not cover'} ${JSON.stringify(sub)}`, () => {
      assert.equal(filterCovers(acl, sub), expected);
    });
  }
});

describe('filtersOverlap', () => {
  const cases: Array<[string, string, boolean]> = [
    // [filter, filter, some topic matches both]
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/+', 'a/b', true],
    ['a/+', '+/b', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true], // '#' includes the parent level
    ['a/#', 'a/b/c', true],
    ['a/b/#', 'a/+', true],
    ['a/b/#', 'a/c/#', false],
    ['#', 'x/y', true],
    ['+', 'a/b', false],
    ['+/+', 'a', false],
    ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['$SYS/#', '+/x', false],
    ['$SYS/#', '$SYS/+', true],
    ['$SYS/x', '$SYS/x', true],
    ['+/x', '#', true],
    ['', '+', true],
  ];
  for (const [a, b, expected] of cases) {
    test(`${JSON.stringify(a)} and ${JSON.stringify(b)} ${expected ? 'overlap' : 'do not overlap'}`, () => {
      assert.equal(filtersOverlap(a, b), expected);
      assert.equal(filtersOverlap(b, a), expected, 'symmetric');
    });
  }
});

describe('parseAcl: parse errors carry the line number', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['topic read a\nbogus x\n', 2, /unknown directive "bogus"/],
    ['# c\n\ntopic\n', 3, /without a topic filter/],
    ['topic read\n', 1, /without a topic filter/],
    ['user\n', 1, /without a user name/],
    ['topic a/#/b\n', 1, /invalid topic filter/],
    ['pattern write a+\n', 1, /invalid topic filter/],
    ['Topic a\n', 1, /unknown directive "Topic"/],
  ];
  for (const [text, line, message] of cases) {
    test(`${JSON.stringify(text)} → line ${line}`, () => {
      assert.throws(() => parseAcl(text), (err: unknown) => {
        assert.ok(err instanceof AclParseError);
        assert.equal(err.line, line);
        assert.match(err.message, message);
        assert.match(err.message, new RegExp(`^acl line ${line}: `));
        return true;
      });
    });
  }

  test('comments, blank lines, indentation and CRLF are accepted', () => {
    const acl = parseAcl('# header\r\n\r\n   # indented comment\r\n  topic   read   a/#  \r\n\t\r\n');
    assert.equal(acl.canSubscribe(undefined, 'c', 'a/b'), true);
    assert.equal(acl.canPublish(undefined, 'c', 'a/b'), false);
  });

  test('an empty file denies everything', () => {
    const acl = parseAcl('');
    assert.equal(acl.canPublish(undefined, 'c', 'a'), false);
    assert.equal(acl.canSubscribe('u', 'c', '#'), false);
  });
});

describe('parseAcl: access', () => {
  const acl = parseAcl(`
topic read pub/#
topic anon/rw
user alice
topic write alice/out
topic read alice/in/+
topic readwrite shared/#
topic deny shared/secret
topic deny shared/locked/#
user bob
topic sensors/#
topic deny sensors/+/private
user alice
topic read alice/extra
`);

  test('anonymous section: read only, and a default readwrite entry', () => {
    assert.equal(acl.canSubscribe(undefined, 'c', 'pub/x'), true);
    assert.equal(acl.canPublish(undefined, 'c', 'pub/x'), false);
    assert.equal(acl.canPublish(undefined, 'c', 'anon/rw'), true);
    assert.equal(acl.canSubscribe(undefined, 'c', 'anon/rw'), true);
    assert.equal(acl.canSubscribe(undefined, 'c', 'alice/in/x'), false);
  });

  test("a user gets their own section only, not the anonymous one", () => {
    assert.equal(acl.canSubscribe('alice', 'c', 'pub/x'), false);
    assert.equal(acl.canPublish('alice', 'c', 'alice/out'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'alice/out'), false);
    assert.equal(acl.canSubscribe('alice', 'c', 'alice/in/1'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'alice/in/+'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'alice/in/#'), false);
    assert.equal(acl.canPublish('alice', 'c', 'alice/in/1'), false);
    assert.equal(acl.canSubscribe('alice', 'c', 'alice/extra'), true, 'a repeated user section is merged');
    assert.equal(acl.canPublish('carol', 'c', 'anon/rw'), false, 'an unlisted user gets nothing');
    assert.equal(acl.canPublish('Alice', 'c', 'alice/out'), false, 'user names are case-sensitive');
  });

  test('deny wins over a grant', () => {
    assert.equal(acl.canPublish('alice', 'c', 'shared/open'), true);
    assert.equal(acl.canPublish('alice', 'c', 'shared/secret'), false);
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/secret'), false);
    assert.equal(acl.canPublish('alice', 'c', 'shared/locked'), false);
    assert.equal(acl.canPublish('alice', 'c', 'shared/locked/x/y'), false);
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/locked/+'), false, 'covered by the deny');
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/locked/#'), false, 'equal to the deny');
    assert.equal(acl.canPublish('bob', 'c', 'sensors/1/private'), false);
    assert.equal(acl.canPublish('bob', 'c', 'sensors/1/public'), true);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/+/private'), false);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/1/private'), false);
  });

  test('a deny refuses a wider subscription that would receive a denied topic', () => {
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/+'), false, 'would receive shared/secret');
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/#'), false);
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/open'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/open/+'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'shared/+/x'), false, 'would receive shared/locked/x');
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/#'), false);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/1/+'), false);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/1/public'), true);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/+/public'), true);
    assert.equal(acl.canSubscribe('bob', 'c', 'sensors/+'), true, 'one level: cannot receive sensors/x/private');
  });

  test("'#' grants do not reach '$' topics", () => {
    const all = parseAcl('topic #\n');
    assert.equal(all.canPublish(undefined, 'c', 'a/b'), true);
    assert.equal(all.canSubscribe(undefined, 'c', '#'), true);
    assert.equal(all.canPublish(undefined, 'c', '$SYS/x'), false);
    assert.equal(all.canSubscribe(undefined, 'c', '$SYS/#'), false);
  });

  test('a filter is the rest of the line, spaces included', () => {
    const spaced = parseAcl('topic write a b/c d\n');
    assert.equal(spaced.canPublish(undefined, 'c', 'a b/c d'), true);
    assert.equal(spaced.canPublish(undefined, 'c', 'a b/c'), false);
    // so a trailing comment is part of the filter, which here makes it invalid
    assert.throws(() => parseAcl('topic a/b # note\n'), AclParseError);
  });

  test("'deny' etc. as the only word is a filter-less access keyword", () => {
    assert.throws(() => parseAcl('topic deny'), AclParseError);
  });
});

describe('parseAcl: patterns', () => {
  const acl = parseAcl(`
pattern write devices/%c/out
pattern read users/%u/#
pattern readwrite both/%u/%c
pattern deny devices/blocked/#
user alice
topic read devices/#
`);

  test('%c is the client id', () => {
    assert.equal(acl.canPublish(undefined, 'dev1', 'devices/dev1/out'), true);
    assert.equal(acl.canPublish('alice', 'dev1', 'devices/dev1/out'), true);
    assert.equal(acl.canPublish(undefined, 'dev1', 'devices/dev2/out'), false);
  });

  test('%u is the user name; a %u pattern never matches a client without one', () => {
    assert.equal(acl.canSubscribe('alice', 'c', 'users/alice/x'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'users/alice/#'), true);
    assert.equal(acl.canSubscribe('bob', 'c', 'users/alice/x'), false);
    assert.equal(acl.canSubscribe(undefined, 'c', 'users/%u/x'), false);
    assert.equal(acl.canSubscribe(undefined, 'c', 'users//x'), false);
    assert.equal(acl.canSubscribe('', 'c', 'users//x'), false, 'an empty user name is not substituted');
    assert.equal(acl.canPublish('bob', 'c1', 'both/bob/c1'), true);
    assert.equal(acl.canPublish(undefined, 'c1', 'both//c1'), false);
  });

  test('substitution is one pass: a user name containing %c is taken literally', () => {
    const a = parseAcl('pattern write both/%u/%c\n');
    assert.equal(a.canPublish('%c', 'dev', 'both/%c/dev'), true);
    assert.equal(a.canPublish('%c', 'dev', 'both/dev/dev'), false);
    assert.equal(a.canPublish('x', '%u', 'both/x/%u'), true);
  });

  test("substituted values containing '+', '#' or '/' make the pattern not match", () => {
    assert.equal(acl.canPublish(undefined, 'a/b', 'devices/a/b/out'), false);
    assert.equal(acl.canPublish(undefined, '+', 'devices/+/out'), false);
    assert.equal(acl.canSubscribe('#', 'c', 'users/#'), false);
    assert.equal(acl.canSubscribe('+', 'c', 'users/+/x'), false);
    assert.equal(acl.canSubscribe('a/b', 'c', 'users/a/b/x'), false);
    assert.equal(acl.canPublish('bob', 'c/1', 'both/bob/c/1'), false);
  });

  test('a pattern deny applies to everyone, whatever their section grants', () => {
    assert.equal(acl.canSubscribe('alice', 'c', 'devices/x'), true);
    assert.equal(acl.canSubscribe('alice', 'c', 'devices/blocked/x'), false);
    assert.equal(acl.canPublish(undefined, 'blocked', 'devices/blocked/out'), false);
  });
});
