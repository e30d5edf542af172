// A connection's ordered steps: replies leave in packet order [MQTT-4.6.0-2] whatever commit each
// waits for and whichever commit settles first.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OrderedSteps, type StepOwner } from '../../../src/broker/ordered-steps.ts';

interface Deferred { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void }

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Let every pending promise reaction run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function owner(): StepOwner & { failures: unknown[]; isOpen: boolean } {
  const o = { isOpen: true, failures: [] as unknown[], fail(e: unknown) { o.failures.push(e); } };
  return o;
}

describe('ordered steps', () => {
  test('with nothing waiting, a step with nothing to wait for runs at once', () => {
    const steps = new OrderedSteps(owner());
    const seen: string[] = [];
    steps.add(undefined, () => seen.push('a'));
    assert.deepEqual(seen, ['a']);
    assert.equal(steps.idle, true);
  });

  test('steps run in the order they were added, whichever commit settles first', async () => {
    const steps = new OrderedSteps(owner());
    const [p1, p2] = [deferred(), deferred()];
    const seen: string[] = [];
    steps.add(p1.promise, () => seen.push('first'));
    steps.add(p2.promise, () => seen.push('second'));
    steps.add(undefined, () => seen.push('third (no wait)'));
    assert.equal(steps.idle, false);
    p2.resolve();
    await settle();
    assert.deepEqual(seen, [], 'nothing runs before the first step');
    p1.resolve();
    await settle();
    assert.deepEqual(seen, ['first', 'second', 'third (no wait)']);
    assert.equal(steps.idle, true);
  });

  test('consecutive steps waiting for the same commit all run when it settles, in order', async () => {
    const steps = new OrderedSteps(owner());
    const shared = deferred();
    const other = deferred();
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) steps.add(shared.promise, () => seen.push(i));
    steps.add(other.promise, () => seen.push(5));
    steps.add(shared.promise, () => seen.push(6)); // the same commit again, behind another one
    shared.resolve();
    await settle();
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
    other.resolve();
    await settle();
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6]);
  });

  test('a failed commit runs the step\'s error handler, or fails the owner; later steps still run', async () => {
    const o = owner();
    const steps = new OrderedSteps(o);
    const [p1, p2, p3] = [deferred(), deferred(), deferred()];
    const seen: string[] = [];
    steps.add(p1.promise, () => seen.push('ok 1'), (e) => seen.push(`error 1: ${(e as Error).message}`));
    steps.add(p2.promise, () => seen.push('ok 2'));
    steps.add(p3.promise, () => seen.push('ok 3'));
    p1.reject(new Error('refused'));
    p2.reject(new Error('lost'));
    p3.resolve();
    await settle();
    assert.deepEqual(seen, ['error 1: refused', 'ok 3']);
    assert.deepEqual(o.failures.map((e) => (e as Error).message), ['lost']);
  });

  test('a step that throws fails the owner and the steps behind it still run while it is open', async () => {
    const o = owner();
    const steps = new OrderedSteps(o);
    const p = deferred();
    const seen: string[] = [];
    steps.add(p.promise, () => { throw new Error('boom'); });
    steps.add(undefined, () => seen.push('after'));
    p.resolve();
    await settle();
    assert.deepEqual(o.failures.map((e) => (e as Error).message), ['boom']);
    assert.deepEqual(seen, ['after']);
  });

  test('once the owner is closed, steps are skipped unless they must run even then', async () => {
    const o = owner();
    const steps = new OrderedSteps(o);
    const p = deferred();
    const seen: string[] = [];
    steps.add(p.promise, () => seen.push('reply'));
    steps.add(p.promise, () => seen.push('hand to subscribers'), undefined, true);
    steps.add(undefined, () => seen.push('later reply'));
    o.isOpen = false;
    p.resolve();
    await settle();
    assert.deepEqual(seen, ['hand to subscribers']);
  });

  test('a step added while a step runs runs after it, not inside it', async () => {
    const steps = new OrderedSteps(owner());
    const p = deferred();
    const seen: string[] = [];
    steps.add(p.promise, () => {
      seen.push('outer start');
      steps.add(undefined, () => seen.push('inner'));
      seen.push('outer end');
    });
    p.resolve();
    await settle();
    assert.deepEqual(seen, ['outer start', 'outer end', 'inner']);
    assert.equal(steps.idle, true);
    steps.add(undefined, () => seen.push('now'));
    assert.equal(seen.at(-1), 'now');
  });

  test('a rejected commit with no step left to see it is still handled (no unhandled rejection)', async () => {
    const o = owner();
    const steps = new OrderedSteps(o);
    const p = deferred();
    steps.add(p.promise, () => undefined, () => undefined);
    o.isOpen = false;
    let unhandled = false;
    const onUnhandled = (): void => { unhandled = true; };
    process.once('unhandledRejection', onUnhandled);
    p.reject(new Error('refused after close'));
    await settle();
    await settle();
    process.removeListener('unhandledRejection', onUnhandled);
    assert.equal(unhandled, false);
  });
});
