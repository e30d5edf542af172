// TopicTree (filters → subscribers, matched by topic name) and RetainedTree (topic names → one
// value, matched by filter), checked against matchTopic as the reference.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { matchTopic } from '../../../src/mqtt/topic.ts';
import { RetainedTree, TopicTree } from '../../../src/mqtt/topic-tree.ts';
import { matchCases } from './topic-fixtures.ts';

/** Every value `tree` visits for `topicName`, in visit order. */
function visited<V>(tree: TopicTree<V>, topicName: string): V[] {
  const out: V[] = [];
  tree.match(topicName, (v) => out.push(v));
  return out;
}

/** Every value `tree` visits for `topicFilter`, in visit order. */
function retainedFor<V>(tree: RetainedTree<V>, topicFilter: string): V[] {
  const out: V[] = [];
  tree.match(topicFilter, (v) => out.push(v));
  return out;
}

const sorted = (xs: string[]): string[] => [...xs].sort();

/** mulberry32: a small deterministic PRNG so the randomized checks are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAME_LEVELS = ['a', 'b', 'c', '', '$x'];
const FILTER_LEVELS = [...NAME_LEVELS, '+', '+', '#'];

function randomTopicName(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) levels.push(NAME_LEVELS[Math.floor(rnd() * NAME_LEVELS.length)]!);
  const name = levels.join('/');
  return name === '' ? 'a' : name; // an empty topic name is invalid
}

function randomTopicFilter(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) {
    const level = FILTER_LEVELS[Math.floor(rnd() * FILTER_LEVELS.length)]!;
    levels.push(level);
    if (level === '#') break; // '#' is always last
  }
  const filter = levels.join('/');
  return filter === '' ? '+' : filter;
}

describe('TopicTree', () => {
  test('add reports new entries and counts them; duplicates are ignored', () => {
    const tree = new TopicTree<string>();
    assert.equal(tree.size, 0);
    assert.equal(tree.add('a/b', 's1'), true);
    assert.equal(tree.add('a/b', 's2'), true);
    assert.equal(tree.add('a/b', 's1'), false);
    assert.equal(tree.add('a/+', 's1'), true);
    assert.equal(tree.size, 3);
    assert.deepEqual(sorted(visited(tree, 'a/b')), ['s1', 's1', 's2']); // one visit per matching filter
  });

  test('remove reports whether the value was there and keeps size in step', () => {
    const tree = new TopicTree<string>();
    tree.add('a/b', 's1');
    tree.add('a/b', 's2');
    assert.equal(tree.remove('a/b', 's3'), false, 'absent value');
    assert.equal(tree.remove('a/c', 's1'), false, 'absent filter');
    assert.equal(tree.remove('a', 's1'), false, 'prefix of a filter, no values');
    assert.equal(tree.remove('a/b/c', 's1'), false, 'longer than any filter');
    assert.equal(tree.size, 2);
    assert.equal(tree.remove('a/b', 's1'), true);
    assert.equal(tree.remove('a/b', 's1'), false, 'already removed');
    assert.equal(tree.size, 1);
    assert.deepEqual(visited(tree, 'a/b'), ['s2']);
    assert.equal(tree.remove('a/b', 's2'), true);
    assert.equal(tree.size, 0);
    assert.deepEqual(visited(tree, 'a/b'), []);
  });

  test('pruning removes only empty branches: longer and shorter filters survive', () => {
    const tree = new TopicTree<string>();
    tree.add('a', 'top');
    tree.add('a/b', 'mid');
    tree.add('a/b/c', 'leaf');
    tree.add('a/b/#', 'hash');
    assert.equal(tree.remove('a/b', 'mid'), true);
    assert.deepEqual(sorted(visited(tree, 'a/b/c')), ['hash', 'leaf']);
    assert.deepEqual(visited(tree, 'a/b'), ['hash']);
    assert.equal(tree.remove('a/b/c', 'leaf'), true);
    assert.equal(tree.remove('a/b/#', 'hash'), true);
    assert.deepEqual(visited(tree, 'a'), ['top']);
    assert.deepEqual(visited(tree, 'a/b/c'), []);
    assert.equal(tree.size, 1);
    // a pruned branch can be added again
    assert.equal(tree.add('a/b/c', 'leaf'), true);
    assert.deepEqual(visited(tree, 'a/b/c'), ['leaf']);
    assert.equal(tree.size, 2);
  });

  test('matching table (one subscriber per filter)', () => {
    for (const [filter, topicName, expected] of matchCases) {
      const tree = new TopicTree<string>();
      tree.add(filter, 'x');
      assert.deepEqual(visited(tree, topicName), expected ? ['x'] : [], `${filter} vs ${topicName}`);
    }
  });

  test("'#' matches the parent level; '+' matches exactly one level", () => {
    const tree = new TopicTree<string>();
    for (const f of ['a/#', 'a/+', '+/#', '#', 'a/+/c', 'a/b']) tree.add(f, f);
    assert.deepEqual(sorted(visited(tree, 'a')), ['#', '+/#', 'a/#']);
    assert.deepEqual(sorted(visited(tree, 'a/b')), ['#', '+/#', 'a/#', 'a/+', 'a/b']);
    assert.deepEqual(sorted(visited(tree, 'a/b/c')), ['#', '+/#', 'a/#', 'a/+/c']);
  });

  test("[MQTT-4.7.2-1] '$' topics are not matched by a leading wildcard", () => {
    const tree = new TopicTree<string>();
    for (const f of ['#', '+', '+/x', '+/#', '$SYS/#', '$SYS/+', '$SYS/x']) tree.add(f, f);
    assert.deepEqual(sorted(visited(tree, '$SYS/x')), ['$SYS/#', '$SYS/+', '$SYS/x']);
    assert.deepEqual(sorted(visited(tree, '$SYS')), ['$SYS/#']);
    assert.deepEqual(sorted(visited(tree, 'SYS/x')), ['#', '+/#', '+/x']);
  });

  test('randomized cross-check against matchTopic (fixed seed)', () => {
    const rnd = prng(0x7e54);
    const filters = [...new Set(Array.from({ length: 400 }, () => randomTopicFilter(rnd)))];
    const topics = [...new Set(Array.from({ length: 400 }, () => randomTopicName(rnd)))];
    const tree = new TopicTree<string>();
    for (const f of filters) assert.equal(tree.add(f, f), true);
    assert.equal(tree.size, filters.length);

    const check = (live: string[]): void => {
      for (const t of topics) {
        const expected = sorted(live.filter((f) => matchTopic(f, t)));
        assert.deepEqual(sorted(visited(tree, t)), expected, `topic ${JSON.stringify(t)}`);
      }
    };
    check(filters);
    // remove half at random: pruning must not lose the rest
    const removed = new Set(filters.filter(() => rnd() < 0.5));
    for (const f of removed) assert.equal(tree.remove(f, f), true);
    const live = filters.filter((f) => !removed.has(f));
    assert.equal(tree.size, live.length);
    check(live);
    for (const f of live) tree.remove(f, f);
    assert.equal(tree.size, 0);
    check([]);
  });
});

describe('RetainedTree', () => {
  test('set/get/delete and size', () => {
    const tree = new RetainedTree<string>();
    assert.equal(tree.get('a'), undefined);
    tree.set('a/b', 'v1');
    tree.set('a', 'v0');
    assert.equal(tree.size, 2);
    tree.set('a/b', 'v2'); // replaces, does not add
    assert.equal(tree.size, 2);
    assert.equal(tree.get('a/b'), 'v2');
    assert.equal(tree.get('a'), 'v0');
    assert.equal(tree.get('a/b/c'), undefined);
    assert.equal(tree.get('a/c'), undefined);
    assert.equal(tree.delete('a/c'), false);
    assert.equal(tree.delete('a/b/c'), false);
    assert.equal(tree.delete('a/b'), true);
    assert.equal(tree.delete('a/b'), false);
    assert.equal(tree.size, 1);
    assert.equal(tree.get('a'), 'v0', 'deleting a child keeps the parent');
    tree.set('x/y/z', 'deep');
    assert.equal(tree.delete('x/y'), false, 'a prefix without a value');
    assert.equal(tree.get('x/y/z'), 'deep');
    assert.deepEqual([...tree.values()].sort(), ['deep', 'v0']);
  });

  test('sizes follow replacements and deletes; a name set again after its branch was pruned is found', () => {
    const tree = new RetainedTree<string>((v) => v.length);
    tree.set('a/b/c', 'xx');
    tree.set('a/b/c', 'xxxxx');
    assert.equal(tree.bytes, 5);
    assert.equal(tree.delete('a/b/c'), true);
    assert.equal(tree.bytes, 0);
    assert.deepEqual(retainedFor(tree, '#'), [], 'the branch is gone');
    tree.set('a/b/c', 'y');
    assert.equal(tree.get('a/b/c'), 'y');
    assert.deepEqual(retainedFor(tree, 'a/+/c'), ['y']);
    assert.equal(tree.size, 1);
    assert.equal(tree.bytes, 1);
  });

  test('delete prunes only empty branches', () => {
    const tree = new RetainedTree<string>();
    tree.set('a', 'a');
    tree.set('a/b/c', 'abc');
    assert.equal(tree.delete('a/b/c'), true);
    assert.deepEqual(retainedFor(tree, '#'), ['a']);
    assert.deepEqual(retainedFor(tree, 'a/#'), ['a']);
    tree.set('a/b/c', 'again');
    assert.deepEqual(retainedFor(tree, 'a/+/c'), ['again']);
  });

  test('matching table (one retained message per topic name)', () => {
    for (const [filter, topicName, expected] of matchCases) {
      const tree = new RetainedTree<string>();
      tree.set(topicName, 'x');
      assert.deepEqual(retainedFor(tree, filter), expected ? ['x'] : [], `${filter} vs ${topicName}`);
    }
  });

  test("'#' matches the parent level; '$' topics are hidden from leading wildcards", () => {
    const tree = new RetainedTree<string>();
    for (const t of ['a', 'a/b', 'a/b/c', 'b', '$SYS/x', '$SYS']) tree.set(t, t);
    assert.deepEqual(sorted(retainedFor(tree, 'a/#')), ['a', 'a/b', 'a/b/c']);
    assert.deepEqual(sorted(retainedFor(tree, '+/#')), ['a', 'a/b', 'a/b/c', 'b']);
    assert.deepEqual(sorted(retainedFor(tree, '#')), ['a', 'a/b', 'a/b/c', 'b']);
    assert.deepEqual(sorted(retainedFor(tree, '+')), ['a', 'b']);
    assert.deepEqual(sorted(retainedFor(tree, '$SYS/#')), ['$SYS', '$SYS/x']);
    assert.deepEqual(sorted(retainedFor(tree, '$SYS/+')), ['$SYS/x']);
  });

  test('randomized cross-check against matchTopic (fixed seed)', () => {
    const rnd = prng(0x5eed);
    const topics = [...new Set(Array.from({ length: 300 }, () => randomTopicName(rnd)))];
    const filters = [...new Set(Array.from({ length: 300 }, () => randomTopicFilter(rnd)))];
    const tree = new RetainedTree<string>();
    for (const t of topics) tree.set(t, t);
    assert.equal(tree.size, topics.length);
    const check = (live: string[]): void => {
      for (const f of filters) {
        const expected = sorted(live.filter((t) => matchTopic(f, t)));
        assert.deepEqual(sorted(retainedFor(tree, f)), expected, `filter ${JSON.stringify(f)}`);
      }
    };
    check(topics);
    const removed = new Set(topics.filter(() => rnd() < 0.5));
    for (const t of removed) assert.equal(tree.delete(t), true);
    const live = topics.filter((t) => !removed.has(t));
    assert.equal(tree.size, live.length);
    check(live);
  });
});
