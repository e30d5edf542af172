// Spec §6.6: the OData `filter` of the Web PubSub REST API — operators, functions, precedence,
// null semantics, compile-time types and the errors (FilterError → 400 InvalidFilter).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { odata } from '@azure/web-pubsub';
import { compileFilter, FilterError, type CompileFilterOptions, type FilterSubject } from '../../../src/api/odata-filter.ts';

const ALICE: FilterSubject = { userId: 'alice', connectionId: 'conn-1', groups: new Set(['g1', 'g2']) };
const BOB: FilterSubject = { userId: 'Bob', connectionId: 'conn-2', groups: new Set<string>() };
const ANON: FilterSubject = { userId: null, connectionId: 'conn-3', groups: new Set(['g1']) };
const OBRIEN: FilterSubject = { userId: "O'Brien", connectionId: 'conn-4', groups: new Set(["it's"]) };

/** Whether `filter` matches `subject`. */
function m(filter: string, subject: FilterSubject = ALICE): boolean {
  return compileFilter(filter).matches(subject);
}

/** `filter` fails to compile with exactly `message` (and `position`, when given). */
function rejects(filter: string, message: string, position?: number, opts?: CompileFilterOptions): void {
  let error: unknown;
  try {
    compileFilter(filter, opts);
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof FilterError, `expected a FilterError for ${JSON.stringify(filter.slice(0, 60))}, got ${String(error)}`);
  assert.equal(error.name, 'FilterError');
  assert.equal(error.message, message);
  if (position !== undefined) assert.equal(error.position, position);
}

describe('§6.6 identifiers and literals', () => {
  test('userId, connectionId and groups, case-insensitively', () => {
    assert.equal(m("userId eq 'alice'"), true);
    assert.equal(m("USERID eq 'alice'"), true);
    assert.equal(m("userid eq 'alice'"), true);
    assert.equal(m("UserId eq 'Alice'"), false, 'values stay case-sensitive');
    assert.equal(m("connectionId eq 'conn-1'"), true);
    assert.equal(m("CONNECTIONID eq 'conn-1'"), true);
    assert.equal(m("connectionId eq 'conn-1'", BOB), false);
    assert.equal(m("'g2' in GROUPS"), true);
    assert.equal(m("'g2' in Groups", BOB), false);
  });

  test("strings with '' escaping", () => {
    assert.equal(m("userId eq 'O''Brien'", OBRIEN), true);
    assert.equal(m("userId eq 'O''Brien'", ALICE), false);
    assert.equal(m("'it''s' in groups", OBRIEN), true);
    assert.equal(m("length('''') eq 1"), true);
    assert.equal(m("length('') eq 0"), true);
    assert.equal(m("'' eq ''"), true);
    assert.equal(m("userId eq 'a b(c), eq ''d'''", { ...ALICE, userId: "a b(c), eq 'd'" }), true);
  });

  test('signed integers', () => {
    assert.equal(m('length(userId) eq 5'), true);
    assert.equal(m('length(userId) eq +5'), true);
    assert.equal(m("indexof(userId, 'x') eq -1"), true);
    assert.equal(m("indexof(userId, 'x') eq -0", ALICE), false);
    assert.equal(m('-3 lt 2'), true);
    assert.equal(m('007 eq 7'), true);
  });

  test('true, false and null', () => {
    assert.equal(m('true'), true);
    assert.equal(m('false'), false);
    assert.equal(m('null eq null'), true);
    assert.equal(m('null ne null'), false);
    assert.equal(m('true eq true'), true);
    assert.equal(m('true ne false'), true);
  });

  test('function names are case-insensitive; whitespace is free', () => {
    assert.equal(m("TOLOWER(userId) eq 'bob'", BOB), true);
    assert.equal(m("startsWith(userId, 'B') and Length(userId) eq 3", BOB), true);
    assert.equal(m("\tuserId\r\neq\n'alice'  "), true);
    assert.equal(m("(userId eq 'alice')and(true)"), true);
    assert.equal(m("tolower (userId) eq 'bob'", BOB), true);
  });

  test("the SDK's odata template output", () => {
    const name = "O'Brien";
    const group = "it's";
    const built = odata`userId eq ${name} or userId eq ${null} or length(userId) gt ${6} or ${group} in groups`;
    assert.equal(built, "userId eq 'O''Brien' or userId eq null or length(userId) gt 6 or 'it''s' in groups");
    const f = compileFilter(built);
    assert.equal(f.matches(OBRIEN), true);
    assert.equal(f.matches(ANON), true);
    assert.equal(f.matches(ALICE), false);
    assert.equal(f.matches({ ...ALICE, userId: 'alice-long' }), true);
    assert.equal(f.matches({ ...BOB, groups: new Set(["it's"]) }), true);

    // Already quoted in the template: the SDK only doubles the quotes.
    const quoted = odata`userId eq '${name}' and connectionId in (${'conn-4'}, ${'x'})`;
    assert.equal(quoted, "userId eq 'O''Brien' and connectionId in ('conn-4', 'x')");
    assert.equal(compileFilter(quoted).matches(OBRIEN), true);
    assert.equal(compileFilter(quoted).matches({ ...OBRIEN, connectionId: 'conn-1' }), false);
  });
});

describe('§6.6 comparison operators', () => {
  test('eq and ne on strings, ints and bools', () => {
    assert.equal(m("userId eq 'alice'"), true);
    assert.equal(m("userId eq 'Bob'"), false);
    assert.equal(m("userId ne 'Bob'"), true);
    assert.equal(m("userId ne 'alice'"), false);
    assert.equal(m("'alice' eq userId"), true);
    assert.equal(m('length(userId) ne 5'), false);
    assert.equal(m("contains(userId, 'li') eq true"), true);
    assert.equal(m("contains(userId, 'li') ne true"), false);
  });

  test('gt, ge, lt, le on ints', () => {
    assert.equal(m('length(userId) gt 4'), true);
    assert.equal(m('length(userId) gt 5'), false);
    assert.equal(m('length(userId) ge 5'), true);
    assert.equal(m('length(userId) ge 6'), false);
    assert.equal(m('length(userId) lt 6'), true);
    assert.equal(m('length(userId) lt 5'), false);
    assert.equal(m('length(userId) le 5'), true);
    assert.equal(m('length(userId) le 4'), false);
    assert.equal(m('10 gt 9'), true, 'numerically, not as text');
  });

  test('gt, ge, lt, le on strings compare ordinally (UTF-16 code units)', () => {
    assert.equal(m("userId gt 'alicd'"), true);
    assert.equal(m("userId gt 'alice'"), false);
    assert.equal(m("userId ge 'alice'"), true);
    assert.equal(m("userId lt 'alicea'"), true);
    assert.equal(m("userId le 'alice'"), true);
    assert.equal(m("userId le 'alicd'"), false);
    assert.equal(m("userId lt 'a'", BOB), true, "'B' (0x42) sorts before 'a' (0x61)");
    assert.equal(m("'Z' lt 'a'"), true);
    assert.equal(m("'10' lt '9'"), true);
    assert.equal(m("'\u00e9' gt 'z'"), true);
  });

  test('comparisons chain left to right', () => {
    assert.equal(m("userId eq 'alice' eq true"), true);
    assert.equal(m("userId eq 'Bob' eq false"), true);
    assert.equal(m("userId eq 'Bob' eq true"), false);
  });
});

describe('§6.6 in', () => {
  test("userId in ('a','b')", () => {
    const f = compileFilter("userId in ('a','b')");
    assert.equal(f.matches({ ...ALICE, userId: 'a' }), true);
    assert.equal(f.matches({ ...ALICE, userId: 'b' }), true);
    assert.equal(f.matches({ ...ALICE, userId: 'c' }), false);
    assert.equal(f.matches({ ...ALICE, userId: 'A' }), false);
    assert.equal(f.matches(ANON), false, 'a null userId is in no list');
    assert.equal(f.clauses, 1);
  });

  test('lists of one item, of ints, and of escaped strings', () => {
    assert.equal(m("connectionId in ('conn-1')"), true);
    assert.equal(m("connectionId in ( 'x' , 'conn-1' )"), true);
    assert.equal(m('length(userId) in (1, 5, -2)'), true);
    assert.equal(m('length(userId) in (1, 2)'), false);
    assert.equal(m("userId in ('x', 'O''Brien')", OBRIEN), true);
    assert.equal(m("tolower(userId) in ('bob')", BOB), true);
    assert.equal(m("'alice' in ('alice')"), true);
  });

  test("'g1' in groups", () => {
    assert.equal(m("'g1' in groups"), true);
    assert.equal(m("'g2' in groups"), true);
    assert.equal(m("'g3' in groups"), false);
    assert.equal(m("'G1' in groups"), false, 'group names are case-sensitive');
    assert.equal(m("'g1' in groups", BOB), false, 'no groups');
    assert.equal(m("'g1' in groups", ANON), true);
    assert.equal(m("userId in groups", { ...ALICE, groups: new Set(['alice']) }), true);
    assert.equal(m("userId in groups", { ...ANON, groups: new Set<string>() }), false);
    assert.equal(m("not ('g1' in groups)", BOB), true);
  });

  test('in binds like a comparison: tighter than and/or, looser than not', () => {
    assert.equal(m("'g9' in groups or userId in ('alice')"), true);
    assert.equal(m("'g1' in groups and userId in ('x')"), false);
    assert.equal(m("'g1' in groups eq true"), true);
  });
});

describe('§6.6 logical operators and precedence', () => {
  test('and, or, not', () => {
    assert.equal(m('true and true'), true);
    assert.equal(m('true and false'), false);
    assert.equal(m('false and true'), false);
    assert.equal(m('false or true'), true);
    assert.equal(m('false or false'), false);
    assert.equal(m('not false'), true);
    assert.equal(m('not true'), false);
    assert.equal(m('not not true'), true);
    assert.equal(m('true and true and true and false'), false);
    assert.equal(m('false or false or false or true'), true);
  });

  test('and binds tighter than or', () => {
    assert.equal(m('true or true and false'), true, 'true or (true and false)');
    assert.equal(m('false and true or true'), true, '(false and true) or true');
    assert.equal(m('(true or true) and false'), false);
    assert.equal(m('false and (true or true)'), false);
    assert.equal(m("userId eq 'x' or userId eq 'alice' and connectionId eq 'conn-1'"), true);
    assert.equal(m("userId eq 'x' or userId eq 'alice' and connectionId eq 'conn-9'"), false);
  });

  test('not binds tighter than comparisons and and/or', () => {
    assert.equal(m('not false and false'), false, '(not false) and false');
    assert.equal(m('not (false and false)'), true);
    assert.equal(m('not false or false'), true);
    assert.equal(m('not true or true'), true, '(not true) or true');
    assert.equal(m("not (userId eq 'alice')"), false);
    assert.equal(m("not (length(userId) gt 5)"), true);
    assert.equal(m('not contains(userId, \'z\')'), true);
    assert.equal(m('not true eq false'), true, '(not true) eq false');
  });

  test('parentheses override and may nest', () => {
    assert.equal(m('((((true))))'), true);
    assert.equal(m("(((userId eq 'alice') and (('g1' in groups))))"), true);
    assert.equal(m('(length(userId)) eq (5)'), true);
  });
});

describe('§6.6 functions', () => {
  test('length of a string and of groups', () => {
    assert.equal(m('length(userId) eq 5'), true);
    assert.equal(m('length(connectionId) eq 6'), true);
    assert.equal(m('length(groups) eq 2'), true);
    assert.equal(m('length(groups) eq 0', BOB), true);
    assert.equal(m("length('\u00e9t\u00e9') eq 3"), true);
    assert.equal(m("length('\u{1F600}') eq 2"), true, 'UTF-16 code units, as .NET counts');
  });

  test('tolower, toupper, trim', () => {
    assert.equal(m("tolower(userId) eq 'bob'", BOB), true);
    assert.equal(m("toupper(userId) eq 'BOB'", BOB), true);
    assert.equal(m("toupper(userId) eq 'Bob'", BOB), false);
    assert.equal(m("trim('  a b \t') eq 'a b'"), true);
    assert.equal(m("trim(userId) eq 'x'", { ...ALICE, userId: ' x ' }), true);
    assert.equal(m("tolower(toupper(trim(' Ab '))) eq 'ab'"), true);
  });

  test('substring with 2 and 3 arguments', () => {
    assert.equal(m("substring(userId, 1) eq 'lice'"), true);
    assert.equal(m("substring(userId, 0) eq 'alice'"), true);
    assert.equal(m("substring(userId, 1, 3) eq 'lic'"), true);
    assert.equal(m("substring(userId, 0, 5) eq 'alice'"), true);
    assert.equal(m("substring(userId, 2, 0) eq ''"), true);
  });

  test('substring clamps out-of-range positions instead of failing', () => {
    assert.equal(m("substring('abc', 5) eq ''"), true);
    assert.equal(m("substring('abc', 3) eq ''"), true);
    assert.equal(m("substring('abc', -1) eq 'abc'"), true);
    assert.equal(m("substring('abc', -1, 2) eq 'ab'"), true);
    assert.equal(m("substring('abc', 1, 99) eq 'bc'"), true);
    assert.equal(m("substring('abc', 1, -1) eq ''"), true);
    assert.equal(m("substring('abc', 9, 2) eq ''"), true);
  });

  test('indexof', () => {
    assert.equal(m("indexof(userId, 'l') eq 1"), true);
    assert.equal(m("indexof(userId, 'alice') eq 0"), true);
    assert.equal(m("indexof(userId, 'z') eq -1"), true);
    assert.equal(m("indexof(userId, '') eq 0"), true);
    assert.equal(m("indexof(userId, 'L') eq -1"), true);
  });

  test('concat', () => {
    assert.equal(m("concat(userId, '-x') eq 'alice-x'"), true);
    assert.equal(m("concat(concat(userId, '/'), connectionId) eq 'alice/conn-1'"), true);
    assert.equal(m("concat('', '') eq ''"), true);
  });

  test('contains, startswith, endswith', () => {
    assert.equal(m("contains(userId, 'lic')"), true);
    assert.equal(m("contains(userId, 'LIC')"), false);
    assert.equal(m("contains(userId, '')"), true);
    assert.equal(m("startswith(userId, 'al')"), true);
    assert.equal(m("startswith(userId, 'li')"), false);
    assert.equal(m("endswith(userId, 'ce')"), true);
    assert.equal(m("endswith(userId, 'al')"), false);
    assert.equal(m("startswith(connectionId, 'conn-') and endswith(connectionId, '1')"), true);
  });
});

describe('§6.6 a null userId', () => {
  test('eq null and ne null', () => {
    assert.equal(m('userId eq null', ANON), true);
    assert.equal(m('userId eq null', ALICE), false);
    assert.equal(m('null eq userId', ANON), true);
    assert.equal(m('userId ne null', ANON), false);
    assert.equal(m('userId ne null', ALICE), true);
    assert.equal(m("userId eq 'alice'", ANON), false);
    assert.equal(m("userId ne 'alice'", ANON), true);
    assert.equal(m("connectionId ne null", ANON), true);
  });

  test('the other comparisons with null are false', () => {
    for (const op of ['gt', 'ge', 'lt', 'le']) {
      assert.equal(m(`userId ${op} 'a'`, ANON), false, op);
      assert.equal(m(`'a' ${op} userId`, ANON), false, op);
      assert.equal(m(`length(userId) ${op} 0`, ANON), false, op);
      assert.equal(m(`not (userId ${op} 'a')`, ANON), true, op);
      assert.equal(m(`userId ${op} null`, ALICE), false, op);
      assert.equal(m(`null ${op} userId`, ANON), false, op);
      assert.equal(m(`length(userId) ${op} null`, ALICE), false, op);
      assert.equal(m(`not (userId ${op} null)`, ALICE), true, op);
    }
  });

  test('string functions over null give null', () => {
    assert.equal(m('tolower(userId) eq null', ANON), true);
    assert.equal(m('toupper(userId) eq null', ANON), true);
    assert.equal(m('trim(userId) eq null', ANON), true);
    assert.equal(m('length(userId) eq null', ANON), true);
    assert.equal(m('length(userId) eq null', ALICE), false);
    assert.equal(m('substring(userId, 1) eq null', ANON), true);
    assert.equal(m("indexof(userId, 'a') eq null", ANON), true);
    assert.equal(m("concat(userId, 'x') eq null", ANON), true);
    assert.equal(m("concat('x', userId) eq null", ANON), true);
    assert.equal(m("contains(userId, 'a') eq null", ANON), true);
    assert.equal(m("contains(userId, 'a')", ANON), false);
    assert.equal(m("startswith(userId, 'a')", ANON), false);
    assert.equal(m("endswith(userId, 'a')", ANON), false);
    assert.equal(m("contains(connectionId, userId)", ANON), false);
  });

  test('null booleans follow three-valued logic and never match', () => {
    assert.equal(m("not contains(userId, 'a')", ANON), false, 'not null is null');
    assert.equal(m("contains(userId, 'a') or true", ANON), true, 'null or true is true');
    assert.equal(m("contains(userId, 'a') or false", ANON), false, 'null or false is null');
    assert.equal(m("contains(userId, 'a') and false", ANON), false);
    assert.equal(m("not (contains(userId, 'a') and false)", ANON), true, 'null and false is false');
    assert.equal(m("not (contains(userId, 'a') and true)", ANON), false, 'null and true is null');
    assert.equal(m("not (contains(userId, 'a') or false)", ANON), false);
    assert.equal(m("userId eq null or userId eq 'x'", ANON), true);
  });
});

describe('§6.6 compiled filters', () => {
  test('compile once, match many subjects', () => {
    const f = compileFilter("userId eq null or startswith(userId, 'a') or 'g9' in groups");
    assert.deepEqual([ALICE, BOB, ANON, OBRIEN].map((s) => f.matches(s)), [true, false, true, false]);
    assert.equal(f.matches({ ...BOB, groups: new Set(['g9']) }), true);
  });

  test('clauses counts comparisons, in and boolean functions', () => {
    assert.equal(compileFilter('true').clauses, 0);
    assert.equal(compileFilter('not false').clauses, 0);
    assert.equal(compileFilter("userId eq 'a'").clauses, 1);
    assert.equal(compileFilter("userId eq 'a' or userId ne 'b' and length(userId) gt 2").clauses, 3);
    assert.equal(compileFilter("'g' in groups and userId in ('a', 'b', 'c')").clauses, 2);
    assert.equal(compileFilter("contains(userId, 'a') or startswith(userId, 'b') or endswith(userId, 'c')").clauses, 3);
    assert.equal(compileFilter("contains(userId, 'a') eq true").clauses, 2);
    assert.equal(compileFilter("tolower(userId) eq 'a'").clauses, 1, 'non-boolean functions do not count');
  });

  test('100 clauses compile; the limit is configurable', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => `userId eq 'u${i}'`).join(' or ');
    const f = compileFilter(hundred);
    assert.equal(f.clauses, 100);
    assert.equal(f.matches({ ...ALICE, userId: 'u99' }), true);
    assert.equal(f.matches(ALICE), false);
    assert.equal(compileFilter("userId eq 'a' or userId eq 'b'", { maxClauses: 2 }).clauses, 2);
  });

  test('a 4096-character filter compiles', () => {
    const text = `userId eq '${'x'.repeat(4096 - 12)}'`;
    assert.equal(text.length, 4096);
    assert.equal(compileFilter(text).matches({ ...ALICE, userId: 'x'.repeat(4084) }), true);
  });

  test('64 levels of nesting compile', () => {
    assert.equal(m(`${'('.repeat(64)}true${')'.repeat(64)}`), true);
    assert.equal(m(`${'not '.repeat(64)}true`), true);
    assert.equal(m(`${'tolower('.repeat(64)}userId${')'.repeat(64)} eq 'alice'`), true);
  });
});

describe('§6.6 errors', () => {
  test('empty filter', () => {
    rejects('', 'Filter is empty', 0);
    rejects('   ', 'Filter is empty', 0);
  });

  test('unknown identifier', () => {
    rejects("name eq 'a'", "Unknown identifier 'name' at position 0: expected userId, connectionId or groups", 0);
    rejects("userId eq 'a' and role eq 'x'", "Unknown identifier 'role' at position 18: expected userId, connectionId or groups", 18);
    rejects("user_id eq 'a'", "Unknown identifier 'user_id' at position 0: expected userId, connectionId or groups", 0);
    rejects('constructor eq 1', "Unknown identifier 'constructor' at position 0: expected userId, connectionId or groups", 0);
    rejects('__proto__ eq 1', "Unknown identifier '__proto__' at position 0: expected userId, connectionId or groups", 0);
  });

  test('unknown function', () => {
    rejects("foo(userId) eq 'a'", "Unknown function 'foo' at position 0", 0);
    rejects("round(length(userId)) eq 1", "Unknown function 'round' at position 0", 0);
    rejects("matchesPattern(userId, 'a*')", "Unknown function 'matchesPattern' at position 0", 0);
    rejects('constructor(userId)', "Unknown function 'constructor' at position 0", 0);
    rejects('toString(userId)', "Unknown function 'toString' at position 0", 0);
  });

  test('wrong number of arguments', () => {
    rejects('length() eq 1', "Function 'length' at position 0 takes 1 argument, got 0", 0);
    rejects('length(userId, groups) eq 1', "Function 'length' at position 0 takes 1 argument, got 2", 0);
    rejects("tolower(userId, 'x') eq 'a'", "Function 'tolower' at position 0 takes 1 argument, got 2", 0);
    rejects("substring(userId) eq 'a'", "Function 'substring' at position 0 takes 2 or 3 arguments, got 1", 0);
    rejects("substring(userId, 1, 2, 3) eq 'a'", "Function 'substring' at position 0 takes 2 or 3 arguments, got 4", 0);
    rejects("contains(userId)", "Function 'contains' at position 0 takes 2 arguments, got 1", 0);
    rejects("true and concat('a', 'b', 'c') eq 'abc'", "Function 'concat' at position 9 takes 2 arguments, got 3", 9);
  });

  test('malformed calls and lists', () => {
    rejects('length eq 1', "Expected '(' after function 'length' at position 7, found 'eq'", 7);
    rejects("length(userId 'x') eq 1", "Expected ',' or ')' in the arguments of 'length' at position 14, found ''x''", 14);
    rejects('length(userId eq 1', "Invalid syntax for 'userId eq 1': Type 'int', expect 'string' or 'null'", 7);
    rejects("contains(userId, 'a',) ", "Unexpected ')' at position 21: expected a value", 21);
    rejects("userId in ()", "Unexpected ')' at position 11: expected a value", 11);
    rejects("userId in ('a' 'b')", "Expected ',' or ')' in the 'in' list at position 15, found ''b''", 15);
    rejects("userId in ('a', connectionId)", "Expected a literal at position 16 in the 'in' list, found 'connectionId'", 16);
    rejects("userId in ('a', null)", "'null' in the 'in' list at position 16 never matches; use 'eq null'", 16);
    rejects("userId in ('a'", "Expected ',' or ')' in the 'in' list at position 14, found end of filter", 14);
  });

  test('keywords and true/false/null are lowercase only', () => {
    const hint = (word: string, at: number) =>
      `'${word}' at position ${at}: keywords and true/false/null are lowercase in OData; write '${word.toLowerCase()}'`;
    rejects("userId EQ 'alice'", hint('EQ', 7), 7);
    rejects("userId eq 'a' AND true", hint('AND', 14), 14);
    rejects("userId eq 'a' Or true", hint('Or', 14), 14);
    rejects('NOT false', hint('NOT', 0), 0);
    rejects("'g1' IN groups", hint('IN', 5), 5);
    rejects('TRUE', hint('TRUE', 0), 0);
    rejects('userId eq Null', hint('Null', 10), 10);
    assert.equal(m("userId eq 'AND'", { ...ALICE, userId: 'AND' }), true, 'inside a string literal case is kept');
  });

  test('unterminated string', () => {
    rejects("userId eq 'alice", 'Unterminated string literal starting at position 10', 10);
    rejects("userId eq 'O''Brien", 'Unterminated string literal starting at position 10', 10);
    rejects("userId eq '", 'Unterminated string literal starting at position 10', 10);
  });

  test('unexpected characters and out-of-range integers', () => {
    rejects("userId == 'a'", "Unexpected character '=' at position 7", 7);
    rejects('userId eq "a"', `Unexpected character '"' at position 10`, 10);
    rejects('length(userId) eq 1.5', "Unexpected character '.' at position 19", 19);
    rejects('length(userId) eq - 1', "Unexpected character '-' at position 18", 18);
    rejects('length(userId) eq 9007199254740992', "Integer literal '9007199254740992' at position 18 is out of range", 18);
  });

  test('trailing tokens', () => {
    rejects("userId eq 'a' 'b'", "Unexpected ''b'' at position 14: expected 'and', 'or' or the end of the filter", 14);
    rejects("userId eq 'a')", "Unexpected ')' at position 13: expected 'and', 'or' or the end of the filter", 13);
    rejects("userId eq 'a' userId", "Unexpected 'userId' at position 14: expected 'and', 'or' or the end of the filter", 14);
    rejects('true not', "Unexpected 'not' at position 5: expected 'and', 'or' or the end of the filter", 5);
    rejects('true, false', "Unexpected ',' at position 4: expected 'and', 'or' or the end of the filter", 4);
  });

  test('missing operands and parentheses', () => {
    rejects("userId eq", 'Unexpected end of filter at position 9: expected a value', 9);
    rejects("userId eq 'a' and", 'Unexpected end of filter at position 17: expected a value', 17);
    rejects("and userId eq 'a'", "Unexpected 'and' at position 0: expected a value", 0);
    rejects("userId eq eq 'a'", "Unexpected 'eq' at position 10: expected a value", 10);
    rejects('not', 'Unexpected end of filter at position 3: expected a value', 3);
    rejects(')', "Unexpected ')' at position 0: expected a value", 0);
    rejects('()', "Unexpected ')' at position 1: expected a value", 1);
    rejects("(userId eq 'a'", "Expected ')' at position 14 to close '(' at position 0, found end of filter", 14);
    rejects("((userId eq 'a') or true", "Expected ')' at position 24 to close '(' at position 0, found end of filter", 24);
  });

  test("type errors: not binds to the next unary (not length(userId) gt 5)", () => {
    rejects('not length(userId) gt 5', "Invalid syntax for 'not length(userId)': Type 'int', expect 'bool'", 0);
    rejects("not userId eq 'a'", "Invalid syntax for 'not userId': Type 'string', expect 'bool'", 0);
    rejects("not 'g1' in groups", "Invalid syntax for 'not 'g1'': Type 'string', expect 'bool'", 0);
    rejects('not null', "Invalid syntax for 'not null': Type 'null', expect 'bool'", 0);
  });

  test('type errors: operands of and/or and the whole filter must be bool', () => {
    rejects('userId', "Invalid syntax for 'userId': Type 'string', expect 'bool'", 0);
    rejects('(userId)', "Invalid syntax for '(userId)': Type 'string', expect 'bool'", 0);
    rejects('length(groups)', "Invalid syntax for 'length(groups)': Type 'int', expect 'bool'", 0);
    rejects('groups', "Invalid syntax for 'groups': Type 'collection', expect 'bool'", 0);
    rejects('null', "Invalid syntax for 'null': Type 'null', expect 'bool'", 0);
    rejects("'yes'", "Invalid syntax for ''yes'': Type 'string', expect 'bool'", 0);
    rejects('userId and true', "Invalid syntax for 'userId and true': Type 'string', expect 'bool'", 0);
    rejects('true and 1', "Invalid syntax for 'true and 1': Type 'int', expect 'bool'", 0);
    rejects("true or false or connectionId", "Invalid syntax for 'true or false or connectionId': Type 'string', expect 'bool'", 0);
    rejects("true and tolower(userId)", "Invalid syntax for 'true and tolower(userId)': Type 'string', expect 'bool'", 0);
  });

  test('type errors: comparison operands', () => {
    rejects('userId eq 5', "Invalid syntax for 'userId eq 5': Type 'int', expect 'string' or 'null'", 0);
    rejects("length(userId) eq '5'", "Invalid syntax for 'length(userId) eq '5'': Type 'string', expect 'int' or 'null'", 0);
    rejects("userId eq true", "Invalid syntax for 'userId eq true': Type 'bool', expect 'string' or 'null'", 0);
    rejects("groups eq 'g1'", "Invalid syntax for 'groups eq 'g1'': Type 'collection', expect 'string', 'int', 'bool' or 'null'", 0);
    rejects("userId eq groups", "Invalid syntax for 'userId eq groups': Type 'collection', expect 'string' or 'null'", 0);
    rejects("null eq groups", "Invalid syntax for 'null eq groups': Type 'collection', expect 'string', 'int', 'bool' or 'null'", 0);
    rejects("null gt null", "Invalid syntax for 'null gt null': Type 'null', expect 'string' or 'int'", 0);
    rejects("null lt true", "Invalid syntax for 'null lt true': Type 'bool', expect 'string' or 'int'", 0);
    rejects('true gt false', "Invalid syntax for 'true gt false': Type 'bool', expect 'string', 'int' or 'null'", 0);
    rejects("userId le 3", "Invalid syntax for 'userId le 3': Type 'int', expect 'string' or 'null'", 0);
    rejects("true and length(userId) ge 'x'", "Invalid syntax for 'length(userId) ge 'x'': Type 'string', expect 'int' or 'null'", 9);
    rejects("contains(userId, 'a') eq 1", "Invalid syntax for 'contains(userId, 'a') eq 1': Type 'int', expect 'bool' or 'null'", 0);
  });

  test('type errors: in', () => {
    rejects("userId in (1, 2)", "Invalid syntax for 'userId in (1, 2)': Type 'int', expect 'string'", 0);
    rejects("userId in ('a', 2)", "Invalid syntax for 'userId in ('a', 2)': Type 'int', expect 'string'", 0);
    rejects("length(userId) in ('5')", "Invalid syntax for 'length(userId) in ('5')': Type 'string', expect 'int'", 0);
    rejects("groups in ('g1')", "Invalid syntax for 'groups in ('g1')': Type 'collection', expect 'string' or 'int'", 0);
    rejects("true in (true)", "Invalid syntax for 'true in (true)': Type 'bool', expect 'string' or 'int'", 0);
    rejects("'g1' in userId", "Invalid syntax for ''g1' in userId': Type 'string', expect 'collection'", 0);
    rejects("1 in groups", "Invalid syntax for '1 in groups': Type 'int', expect 'string'", 0);
    rejects("null in groups", "Invalid syntax for 'null in groups': Type 'null', expect 'string'", 0);
  });

  test('type errors: function arguments', () => {
    rejects("tolower(5) eq 'a'", "Invalid syntax for 'tolower(5)': Type 'int', expect 'string' (argument 1 of 'tolower')", 0);
    rejects("toupper(groups) eq 'a'", "Invalid syntax for 'toupper(groups)': Type 'collection', expect 'string' (argument 1 of 'toupper')", 0);
    rejects("trim(null) eq 'a'", "Invalid syntax for 'trim(null)': Type 'null', expect 'string' (argument 1 of 'trim')", 0);
    rejects('length(3) eq 1', "Invalid syntax for 'length(3)': Type 'int', expect 'string' or 'collection' (argument 1 of 'length')", 0);
    rejects("substring(userId, 'a') eq 'b'", "Invalid syntax for 'substring(userId, 'a')': Type 'string', expect 'int' (argument 2 of 'substring')", 0);
    rejects("substring(userId, 1, true) eq 'b'", "Invalid syntax for 'substring(userId, 1, true)': Type 'bool', expect 'int' (argument 3 of 'substring')", 0);
    rejects("indexof(userId, 1) eq 0", "Invalid syntax for 'indexof(userId, 1)': Type 'int', expect 'string' (argument 2 of 'indexof')", 0);
    rejects("concat(userId, length(userId)) eq 'a'", "Invalid syntax for 'concat(userId, length(userId))': Type 'int', expect 'string' (argument 2 of 'concat')", 0);
    rejects("contains(groups, 'g1')", "Invalid syntax for 'contains(groups, 'g1')': Type 'collection', expect 'string' (argument 1 of 'contains')", 0);
    rejects("startswith(userId, true)", "Invalid syntax for 'startswith(userId, true)': Type 'bool', expect 'string' (argument 2 of 'startswith')", 0);
    rejects("endswith(1, 'a')", "Invalid syntax for 'endswith(1, 'a')': Type 'int', expect 'string' (argument 1 of 'endswith')", 0);
  });

  test('101 clauses', () => {
    const clauses = Array.from({ length: 101 }, (_, i) => `userId eq 'u${i}'`);
    const at = clauses.slice(0, 100).join(' or ').length + ' or '.length;
    rejects(clauses.join(' or '), `Filter has too many clauses: the limit is 100 (clause 101 at position ${at})`, at);
    rejects("userId eq 'a' or contains(userId, 'b')", 'Filter has too many clauses: the limit is 1 (clause 2 at position 17)', 17, { maxClauses: 1 });
    rejects("'a' in groups or 'b' in groups", 'Filter has too many clauses: the limit is 1 (clause 2 at position 17)', 17, { maxClauses: 1 });
  });

  test('1,000 nested parentheses throw FilterError, not RangeError', () => {
    const message = "Filter is nested too deeply at position 64: more than 64 levels of parentheses, function calls and 'not'";
    rejects(`${'('.repeat(1000)}true${')'.repeat(1000)}`, message, 64);
    rejects(`${'('.repeat(65)}true${')'.repeat(65)}`, message, 64);
    rejects(`${'('.repeat(100_000)}true${')'.repeat(100_000)}`, message, 64, { maxLength: 1_000_000 });
    rejects(`${'not '.repeat(1000)}true`, "Filter is nested too deeply at position 256: more than 64 levels of parentheses, function calls and 'not'", 256);
    rejects(`${'tolower('.repeat(100)}userId${')'.repeat(100)} eq 'a'`,
      "Filter is nested too deeply at position 512: more than 64 levels of parentheses, function calls and 'not'", 512);
    rejects(`userId in (${'('.repeat(100)}'a'${')'.repeat(101)}`,
      "Filter is nested too deeply at position 75: more than 64 levels of parentheses, function calls and 'not'", 75);
    assert.equal(m(`userId in (${'('.repeat(64)}'alice'${')'.repeat(65)}`), true, 'a parenthesised literal is still a literal');
  });

  test('too long', () => {
    const text = `userId eq '${'x'.repeat(4096 - 11)}'`;
    assert.equal(text.length, 4097);
    rejects(text, 'Filter is 4097 characters long; the limit is 4096', undefined);
    rejects("userId eq 'abc'", 'Filter is 15 characters long; the limit is 10', undefined, { maxLength: 10 });
    assert.equal(compileFilter("userId eq 'abc'", { maxLength: 15 }).clauses, 1);
  });

  test('long tokens are clipped in messages', () => {
    const name = 'n'.repeat(100);
    rejects(`${name} eq 'a'`, `Unknown identifier '${'n'.repeat(80)}…' at position 0: expected userId, connectionId or groups`, 0);
  });
});
