// Long timers are wake-ups only (issue 8, finding 1): wakeAt never hands a timer more than
// 2^31-1 ms (Node fires a longer one after 1 ms), re-arms until the deadline is reached, and never
// calls back early, whatever the clock's timers do. Driven by a fake clock that behaves like Node.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TIMER_MS, wakeAt } from '../../../src/broker/ports.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';

const DAY_MS = 86_400_000;

describe('wakeAt: long deadlines', () => {
  test('a 30-day deadline fires once, at the deadline, never earlier; no timer above 2^31-1 ms', () => {
    const clock = new FakeClock();
    const start = clock.now();
    const deadline = start + 2_592_000 * 1000;
    const fired: number[] = [];
    wakeAt(clock, deadline, () => fired.push(clock.now()));
    clock.advance(1);
    assert.deepEqual(fired, [], 'fired after 1 ms: the delay went to setTimeout unclamped');
    clock.advance(29 * DAY_MS);
    assert.deepEqual(fired, []);
    clock.advance(DAY_MS - 2);
    assert.deepEqual(fired, [], 'fired 1 ms early');
    clock.advance(1);
    assert.deepEqual(fired, [deadline]);
    clock.advance(60 * DAY_MS);
    assert.deepEqual(fired, [deadline], 'fired twice');
    assert.ok(clock.armed.every((ms) => ms <= MAX_TIMER_MS), `a timer was armed with more than 2^31-1 ms: ${clock.armed}`);
    assert.equal(clock.pending, 0);
  });

  test('the largest value the protocol allows (0xFFFFFFFF s, ≈ 136 years) is re-armed in steps and not reached in 100 years', () => {
    const clock = new FakeClock();
    let fired = false;
    wakeAt(clock, clock.now() + 0xffffffff * 1000, () => { fired = true; });
    clock.advance(100 * 365 * DAY_MS);
    assert.equal(fired, false);
    assert.ok(clock.armed.every((ms) => ms <= MAX_TIMER_MS));
    assert.ok(clock.armed.length > 1000, 'the wake-up was re-armed in steps');
    clock.advance(37 * 365 * DAY_MS);
    assert.equal(fired, true);
  });

  test('cancel stops it, also between steps', () => {
    const clock = new FakeClock();
    let fired = false;
    const t = wakeAt(clock, clock.now() + 40 * DAY_MS, () => { fired = true; });
    clock.advance(30 * DAY_MS);
    t.cancel();
    clock.advance(30 * DAY_MS);
    assert.equal(fired, false);
    assert.equal(clock.pending, 0);
  });

  test('a deadline already past fires on the next wake-up, not synchronously', () => {
    const clock = new FakeClock();
    let fired = false;
    wakeAt(clock, clock.now() - 5000, () => { fired = true; });
    assert.equal(fired, false);
    clock.advance(1);
    assert.equal(fired, true);
  });

  test('a timer that fires before the deadline (clock stepped back) is armed again for what remains', () => {
    const clock = new FakeClock();
    const deadline = clock.now() + 10_000;
    const fired: number[] = [];
    wakeAt(clock, deadline, () => fired.push(clock.now()));
    clock.jump(-4000);
    clock.advance(10_000);
    assert.deepEqual(fired, [], 'fired before the deadline');
    clock.advance(4000);
    assert.deepEqual(fired, [deadline]);
  });

  test('the wall clock stepping forward past the deadline fires at the next wake-up', () => {
    const clock = new FakeClock();
    let fired = false;
    wakeAt(clock, clock.now() + 50 * DAY_MS, () => { fired = true; });
    clock.jump(60 * DAY_MS);
    clock.advance(MAX_TIMER_MS);
    assert.equal(fired, true);
  });
});
