// Web PubSub roles as rights (spec §3.3, §3.4): role forms, the wildcard pattern syntax, validity.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidRole, RoleSet, type Right } from '../../../src/auth/roles.ts';

/** Does a set holding only `role` allow `right` on `group`? */
function allows(role: string, right: Right, group: string): boolean {
  return new RoleSet([role]).allows(right, group);
}

describe('role forms', () => {
  test('no roles: nothing is allowed', () => {
    assert.equal(RoleSet.empty.allows('sendToGroup', 'a'), false);
    assert.equal(RoleSet.empty.allows('joinLeaveGroup', 'a'), false);
    assert.deepEqual(RoleSet.empty.roles, []);
  });

  test('webpubsub.sendToGroup: any group, send only', () => {
    const r = new RoleSet(['webpubsub.sendToGroup']);
    assert.equal(r.allows('sendToGroup', 'a/b'), true);
    assert.equal(r.allows('sendToGroup', '$anything.x'), true);
    assert.equal(r.allows('joinLeaveGroup', 'a/b'), false);
  });

  test('webpubsub.joinLeaveGroup: any group, join only', () => {
    const r = new RoleSet(['webpubsub.joinLeaveGroup']);
    assert.equal(r.allows('joinLeaveGroup', '#'), true);
    assert.equal(r.allows('sendToGroup', 'a'), false);
  });

  test('exact group: everything after the prefix dot, dots slashes and stars included', () => {
    assert.equal(allows('webpubsub.sendToGroup.a.b/c', 'sendToGroup', 'a.b/c'), true);
    assert.equal(allows('webpubsub.sendToGroup.a.b/c', 'sendToGroup', 'a.b'), false);
    assert.equal(allows('webpubsub.sendToGroup.a.b/c', 'sendToGroup', 'a.b/c/d'), false);
    assert.equal(allows('webpubsub.joinLeaveGroup.a/+', 'joinLeaveGroup', 'a/+'), true);
    assert.equal(allows('webpubsub.joinLeaveGroup.a/+', 'joinLeaveGroup', 'a/b'), false);
    // '*' in an exact role is a literal character, not a wildcard
    assert.equal(allows('webpubsub.sendToGroup.chat-*', 'sendToGroup', 'chat-*'), true);
    assert.equal(allows('webpubsub.sendToGroup.chat-*', 'sendToGroup', 'chat-1'), false);
    assert.equal(allows('webpubsub.sendToGroup.x', 'joinLeaveGroup', 'x'), false);
  });

  test('case-sensitive role names and groups', () => {
    assert.equal(allows('webpubsub.sendToGroup.Room', 'sendToGroup', 'room'), false);
    assert.equal(allows('webpubsub.sendtogroup.room', 'sendToGroup', 'room'), false);
    assert.equal(allows('WebPubSub.sendToGroup', 'sendToGroup', 'room'), false);
    assert.equal(allows('webpubsub.sendToGroups.Chat-*', 'sendToGroup', 'chat-1'), false);
  });

  test('unknown and malformed roles are ignored, kept in .roles', () => {
    const given = ['admin', 'webpubsub.sendToGroups.a*b*c*d*e*f*g', 'webpubsub.joinLeaveGroup.ok', 'webpubsub.sendToGroupx'];
    const r = new RoleSet(given);
    assert.deepEqual(r.roles, given);
    assert.ok(Object.isFrozen(r.roles));
    assert.equal(r.allows('sendToGroup', 'abcdefg'), false);
    assert.equal(r.allows('sendToGroup', 'x'), false);
    assert.equal(r.allows('joinLeaveGroup', 'ok'), true);
  });

  test('roles accumulate; any iterable is accepted', () => {
    const r = new RoleSet(new Set(['webpubsub.sendToGroup.a', 'webpubsub.sendToGroups.b.*', 'webpubsub.joinLeaveGroups.**']));
    assert.equal(r.allows('sendToGroup', 'a'), true);
    assert.equal(r.allows('sendToGroup', 'b.x'), true);
    assert.equal(r.allows('sendToGroup', 'c'), false);
    assert.equal(r.allows('joinLeaveGroup', 'anything.at.all'), true);
  });

  test('structurally satisfies the allows() port', () => {
    const port: { allows(right: 'sendToGroup' | 'joinLeaveGroup', group: string): boolean } = new RoleSet(['webpubsub.sendToGroup']);
    assert.equal(port.allows('sendToGroup', 'g'), true);
  });
});

describe('pattern syntax (spec §3.3 examples and more)', () => {
  const cases: Array<[string, string, boolean]> = [
    // [pattern, group, matches]
    ['chat-*', 'chat-1', true],
    ['chat-*', 'chat-', true],
    ['chat-*', 'chat.1', false],
    ['chat-*', 'chat-1.x', false],
    ['chat-*', 'chat-a/b', true], // '/' is an ordinary character
    ['clientA.**', 'clientA.alpha.room1', true],
    ['clientA.**', 'clientA.', true],
    ['clientA.**', 'clientA', false],
    ['clientA.**', 'clientB.alpha', false],
    ['clientA.rooms.?1', 'clientA.rooms.a1', true],
    ['clientA.rooms.?1', 'clientA.rooms.1', false],
    ['clientA.rooms.?1', 'clientA.rooms..1', false],
    ['clientA.rooms.?1', 'clientA.rooms.ab1', false],
    ['literal\\*star', 'literal*star', true],
    ['literal\\*star', 'literalXstar', false],
    ['literal\\*star', 'literalstar', false],
    ['literal\\*star', 'literal**star', false],
    ['q\\?', 'q?', true],
    ['q\\?', 'qx', false],
    ['back\\\\slash', 'back\\slash', true],
    ['back\\\\slash', 'back\\\\slash', false],
    ['a\\b', 'a\\b', true], // '\' before another character: literal backslash and the character
    ['a\\b', 'ab', false],
    ['a\\.*', 'a\\.x', true],
    ['a.b', 'a.b', true],
    ['a.b', 'aXb', false], // '.' is literal
    ['*', '', true],
    ['*', 'abc', true],
    ['*', 'a.b', false],
    ['**', 'a.b.c', true],
    ['**', '', true],
    ['*.*', 'a.b', true],
    ['*.*', 'ab', false],
    ['*.*', 'a.b.c', false],
    ['a.**.z', 'a.b.c.z', true],
    ['a.**.z', 'a..z', true],
    ['a.**.z', 'a.z', false],
    ['***', 'a.b', true], // a run of stars containing '**' crosses dots
    ['a*b', 'ab', true],
    ['a*b', 'axxb', true],
    ['a*b', 'axxbc', false],
    ['??', 'ab', true],
    ['??', 'a', false],
    ['??', '😀😀', true], // '?' is one code point
    ['?', '😀', true],
    ['x*y*z', 'x.y.z', false],
    ['**b', 'a.b', true],
  ];
  for (const [pattern, group, expected] of cases) {
    test(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(group)}`, () => {
      assert.equal(allows(`webpubsub.sendToGroups.${pattern}`, 'sendToGroup', group), expected);
      assert.equal(allows(`webpubsub.joinLeaveGroups.${pattern}`, 'joinLeaveGroup', group), expected);
      assert.equal(allows(`webpubsub.joinLeaveGroups.${pattern}`, 'sendToGroup', group), false);
    });
  }

  test('a compiled pattern is reused across calls and stays correct', () => {
    const r = new RoleSet(['webpubsub.sendToGroups.a*b']);
    assert.deepEqual(['ab', 'a.b', 'axb', 'ab', 'a'].map((g) => r.allows('sendToGroup', g)), [true, false, true, true, false]);
  });

  test('10,000-character groups against many-star patterns', () => {
    const as = 'a'.repeat(10_000);
    const r = new RoleSet(['webpubsub.sendToGroups.*a*a*a*a*b', 'webpubsub.joinLeaveGroups.**a**a*b']);
    assert.equal(r.allows('sendToGroup', as), false);
    assert.equal(r.allows('sendToGroup', `${as}b`), true);
    assert.equal(r.allows('sendToGroup', `${as}.b`), false); // '*' does not cross the dot
    assert.equal(r.allows('sendToGroup', `${'a'.repeat(5_000)}b${'a'.repeat(4_999)}`), false);
    assert.equal(r.allows('joinLeaveGroup', as), false);
    assert.equal(r.allows('joinLeaveGroup', `${'a.'.repeat(5_000)}ab`), true);
    assert.equal(r.allows('joinLeaveGroup', `${'a.'.repeat(5_000)}.b`), false);
  });
});

describe('isValidRole', () => {
  const cases: Array<[string, boolean, string]> = [
    ['webpubsub.sendToGroups.a*b*c*d*e*f', true, 'five stars'],
    ['webpubsub.sendToGroups.a*b*c*d*e*f*g', false, 'six stars'],
    ['webpubsub.joinLeaveGroups.**.**.*', true, "two '**' and a '*' count 5"],
    ['webpubsub.joinLeaveGroups.**.**.**', false, "three '**' count 6"],
    ['webpubsub.sendToGroups.******', false, 'six stars in a row'],
    ['webpubsub.sendToGroups.\\*\\*\\*\\*\\*\\*', true, 'escaped stars do not count'],
    ['webpubsub.sendToGroups.abc\\', false, "trailing lone '\\'"],
    ['webpubsub.sendToGroups.abc\\\\', true, "trailing escaped '\\'"],
    ['webpubsub.sendToGroups.', false, 'empty pattern'],
    ['webpubsub.sendToGroups', false, 'pattern role without a pattern'],
    ['webpubsub.sendToGroup.', false, 'empty group'],
    ['webpubsub.sendToGroup.a*b*c*d*e*f*g', true, 'an exact group may contain any number of stars'],
    ['webpubsub.sendToGroup.a\\', true, "an exact group may end in '\\'"],
    ['webpubsub.sendToGroup', true, 'any group'],
    ['webpubsub.joinLeaveGroup.x', true, 'exact group'],
    ['admin', true, 'unknown roles are not malformed group roles'],
  ];
  for (const [role, valid, why] of cases) {
    test(`${why}: ${role} → ${valid}`, () => {
      assert.equal(isValidRole(role), valid);
    });
  }

  test('a malformed pattern role grants nothing', () => {
    assert.equal(allows('webpubsub.sendToGroups.abc\\', 'sendToGroup', 'abc\\'), false);
    assert.equal(allows('webpubsub.sendToGroups.abc\\', 'sendToGroup', 'abc'), false);
  });

  test('an exact role keeps a trailing backslash', () => {
    assert.equal(allows('webpubsub.sendToGroup.a\\', 'sendToGroup', 'a\\'), true);
  });
});
