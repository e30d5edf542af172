// Topic names and filters (MQTT 5 §4.7, §4.8): validation, $share parsing, matching.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hasWildcard, isValidTopicFilter, isValidTopicName, matchTopic, parseSharedFilter } from '../../../src/mqtt/topic.ts';
import { matchCases } from './topic-fixtures.ts';

describe('isValidTopicName', () => {
  const cases: Array<[string, boolean, string]> = [
    ['a', true, 'one level'],
    ['a/b/c', true, 'several levels'],
    ['/', true, 'two empty levels'],
    ['/a', true, 'leading empty level'],
    ['a//b', true, 'empty level in the middle'],
    ['a/', true, 'trailing empty level'],
    ['$SYS/broker', true, "'$' topics are valid names"],
    [' ', true, 'a space'],
    ['ä/€/😀', true, 'non-ASCII'],
    ['x'.repeat(65535), true, '[MQTT-4.7.3-3] 65,535 bytes'],
    ['€'.repeat(21845), true, '[MQTT-4.7.3-3] 65,535 UTF-8 bytes'],
    ['', false, '[MQTT-4.7.3-1] empty'],
    ['a/+', false, '[MQTT-3.3.2-2] single-level wildcard'],
    ['a/#', false, '[MQTT-3.3.2-2] multi-level wildcard'],
    ['+', false, '[MQTT-3.3.2-2] bare +'],
    ['a+b', false, "[MQTT-3.3.2-2] '+' inside a level"],
    ['a#', false, "[MQTT-3.3.2-2] '#' inside a level"],
    ['a\u0000b', false, '[MQTT-4.7.3-2] U+0000'],
    ['x'.repeat(65536), false, '[MQTT-4.7.3-3] more than 65,535 bytes'],
    ['€'.repeat(21846), false, '[MQTT-4.7.3-3] more than 65,535 UTF-8 bytes (21,846 UTF-16 units)'],
  ];
  for (const [name, valid, why] of cases) {
    test(`${why}: ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name)} → ${valid}`, () => {
      assert.equal(isValidTopicName(name), valid);
    });
  }
});

describe('isValidTopicFilter', () => {
  const cases: Array<[string, boolean, string]> = [
    ['a/b', true, 'no wildcards'],
    ['#', true, 'bare #'],
    ['+', true, 'bare +'],
    ['a/#', true, "'#' last"],
    ['a/+/b', true, "'+' in the middle"],
    ['+/+', true, "two '+'"],
    ['+/#', true, "'+' then '#'"],
    ['/+', true, 'empty first level'],
    ['a//#', true, 'empty level before #'],
    ['$SYS/#', true, "'$' filter"],
    ['', false, '[MQTT-4.7.3-1] empty'],
    ['a#', false, "[MQTT-4.7.1-1] '#' must be a whole level"],
    ['a/#/b', false, "[MQTT-4.7.1-1] '#' must be last"],
    ['#/a', false, "[MQTT-4.7.1-1] '#' must be last"],
    ['a/b#', false, "[MQTT-4.7.1-1] '#' must be a whole level"],
    ['##', false, "[MQTT-4.7.1-1] '##'"],
    ['a+', false, "[MQTT-4.7.1-2] '+' must be a whole level"],
    ['a/+b/c', false, "[MQTT-4.7.1-2] '+' must be a whole level"],
    ['++', false, "[MQTT-4.7.1-2] '++'"],
    ['a\u0000', false, '[MQTT-4.7.3-2] U+0000'],
    ['x'.repeat(65536), false, '[MQTT-4.7.3-3] more than 65,535 bytes'],
    ['€'.repeat(21844) + '/#', true, '[MQTT-4.7.3-3] 65,534 UTF-8 bytes'],
    ['€'.repeat(21846) + '/#', false, '[MQTT-4.7.3-3] more than 65,535 UTF-8 bytes'],
  ];
  for (const [filter, valid, why] of cases) {
    test(`${why}: ${JSON.stringify(filter.length > 20 ? `${filter.slice(0, 8)}…(${filter.length})` : filter)} → ${valid}`, () => {
      assert.equal(isValidTopicFilter(filter), valid);
    });
  }
});

test('hasWildcard', () => {
  assert.equal(hasWildcard('a/b'), false);
  assert.equal(hasWildcard('a/+'), true);
  assert.equal(hasWildcard('#'), true);
  assert.equal(hasWildcard('$SYS/x'), false);
});

describe('parseSharedFilter', () => {
  const cases: Array<[string, ReturnType<typeof parseSharedFilter>, string]> = [
    ['a/b', undefined, 'a normal filter'],
    ['$sharex/g/a', undefined, 'not the $share prefix'],
    ['$SHARE/g/a', undefined, 'the prefix is case-sensitive'],
    ['$share/g/a/b', { shareName: 'g', topicFilter: 'a/b' }, 'group and filter'],
    ['$share/group-1/#', { shareName: 'group-1', topicFilter: '#' }, "filter '#'"],
    ['$share/g/+/x', { shareName: 'g', topicFilter: '+/x' }, "filter '+/x'"],
    ['$share/g//', { shareName: 'g', topicFilter: '/' }, 'filter of empty levels'],
    ['$share/g', null, '[MQTT-4.8.2-2] no filter'],
    ['$share/g/', null, '[MQTT-4.8.2-2] empty filter'],
    ['$share//a', null, '[MQTT-4.8.2-1] empty share name'],
    ['$share/', null, '[MQTT-4.8.2-1] nothing after the prefix'],
    ['$share/g+/a', null, "[MQTT-4.8.2-2] '+' in the share name"],
    ['$share/g#/a', null, "[MQTT-4.8.2-2] '#' in the share name"],
    ['$share/+/a', null, "[MQTT-4.8.2-2] share name '+'"],
    ['$share/g/a#', null, 'invalid filter'],
    ['$share/g/#/a', null, "invalid filter ('#' not last)"],
  ];
  for (const [filter, expected, why] of cases) {
    test(`${why}: ${JSON.stringify(filter)}`, () => {
      assert.deepEqual(parseSharedFilter(filter), expected);
    });
  }
});

describe('matchTopic', () => {
  for (const [filter, topicName, expected] of matchCases) {
    test(`${JSON.stringify(filter)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(topicName)}`, () => {
      assert.equal(matchTopic(filter, topicName), expected);
    });
  }
});
