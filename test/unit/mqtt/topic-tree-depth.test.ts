// Deep topics must not overflow the stack: every walk of TopicTree and RetainedTree (add, match,
// retained match, remove and its pruning) is iterative, whatever the number of levels.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RetainedTree, TopicTree } from '../../../src/mqtt/topic-tree.ts';

const LEVELS = 100_000;
/** A topic of LEVELS levels: "x/x/.../x" (or "/" repeated, as in the report). */
const deepName = Array.from({ length: LEVELS }, () => 'x').join('/');
const slashes = '/'.repeat(LEVELS - 1); // LEVELS empty levels

describe('TopicTree with 100,000 levels', () => {
  test('add, match through "+" and "#", remove and prune', () => {
    const tree = new TopicTree<string>();
    assert.equal(tree.add(deepName, 'exact'), true);
    const plusFilter = Array.from({ length: LEVELS }, (_, i) => (i % 2 === 0 ? '+' : 'x')).join('/');
    assert.equal(tree.add(plusFilter, 'plus'), true);
    assert.equal(tree.add('#', 'hash'), true);
    assert.equal(tree.add(`${deepName}/#`, 'below'), true);
    const seen: string[] = [];
    tree.match(deepName, (v) => seen.push(v));
    assert.deepEqual(seen.sort(), ['below', 'exact', 'hash', 'plus']);
    const slashSeen: string[] = [];
    tree.add(slashes, 'slashes');
    tree.match(slashes, (v) => slashSeen.push(v));
    assert.deepEqual(slashSeen.sort(), ['hash', 'slashes']);
    assert.equal(tree.remove(deepName, 'exact'), true);
    assert.equal(tree.remove(plusFilter, 'plus'), true);
    assert.equal(tree.remove(`${deepName}/#`, 'below'), true);
    assert.equal(tree.remove(slashes, 'slashes'), true);
    const after: string[] = [];
    tree.match(deepName, (v) => after.push(v));
    assert.deepEqual(after, ['hash']);
    assert.equal(tree.size, 1);
  });
});

describe('RetainedTree with 100,000 levels', () => {
  test('set, get, match by "#", "+" filters and the exact name, delete', () => {
    const tree = new RetainedTree<string>();
    tree.set(slashes, 'slashes');
    tree.set(deepName, 'deep');
    tree.set('a', 'a');
    const all: string[] = [];
    tree.match('#', (v) => all.push(v));
    assert.deepEqual(all.sort(), ['a', 'deep', 'slashes']);
    const underX: string[] = [];
    tree.match('x/#', (v) => underX.push(v));
    assert.deepEqual(underX, ['deep']);
    const plus: string[] = [];
    tree.match(Array.from({ length: LEVELS }, () => '+').join('/'), (v) => plus.push(v));
    assert.deepEqual(plus.sort(), ['deep', 'slashes']);
    const exact: string[] = [];
    tree.match(deepName, (v) => exact.push(v));
    assert.deepEqual(exact, ['deep']);
    assert.equal(tree.get(deepName), 'deep');
    assert.equal(tree.delete(deepName), true);
    assert.equal(tree.delete(slashes), true);
    assert.equal(tree.size, 1);
    assert.deepEqual([...tree.values()], ['a']);
  });
});
