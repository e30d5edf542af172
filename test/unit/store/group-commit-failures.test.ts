// The group-commit writer (src/store/pg/group-commit.ts) when the database fails: rows refused
// (SQLSTATE classes 21, 22, 23, 54) fail their own unit alone and keep the connection; anything
// else fails the batch, drops the connection and marks the store unhealthy until a later commit
// (the caller's retry) succeeds; the watchdog abandons a commit that never answers; close drains.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../../../src/store/store.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { FakeDatabase, sqlError, turnsUntil, unit } from './fake-database.ts';

/** The StoreError a unit failed with. */
async function failure(p: Promise<void>): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof StoreError, `a StoreError, not ${String(e)}`);
    return e;
  }
  return assert.fail('the unit committed');
}

describe('group commit: rows the database refuses', () => {
  for (const code of ['21000', '22021', '23505', '54000']) {
    test(`SQLSTATE ${code}: the refused unit fails alone, the others commit together in order, the connection is kept`, async () => {
      const db = new FakeDatabase();
      db.refuse.set('bad', code);
      const w = db.writer();
      const order: string[] = [];
      const units = ['a', 'bad', 'c', 'd', 'e'].map((l) => w.submit(unit(l)).then(() => { order.push(l); }));
      const refused = await failure(units[1]!);
      await Promise.all([units[0], ...units.slice(2)]);
      await w.whenBacklogBelow(0, 0); // (the writer releases the connection after settling the units)
      assert.equal(refused.refused, true, 'marked refused: callers must not retry it');
      assert.equal((refused.cause as { code?: string }).code, code);
      assert.deepEqual(order, ['a', 'c', 'd', 'e']);
      assert.deepEqual(db.committed, [['a', 'c', 'd', 'e']], 'one transaction for the units that were not refused');
      assert.deepEqual(db.released, [false], 'a data error does not drop the connection');
      assert.equal(w.healthy, true, 'refused rows say nothing about the server');
      // The refused unit is tried once as part of the batch and once alone, never again
      const alone = db.calls.filter((c) => c.kind === 'savepoint' && c.labels.length === 1 && c.labels[0] === 'bad');
      assert.equal(alone.length, 1);
      await w.submit(unit('next'));
      assert.deepEqual(db.committed.at(-1), ['next'], 'the next commit does not carry it again');
    });
  }

  test('bisection: two refused units among eight, each isolated with savepoints in one transaction', async () => {
    const db = new FakeDatabase();
    db.refuse.set('u2', '23505');
    db.refuse.set('u7', '22P05');
    const w = db.writer();
    const labels = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
    const results = await Promise.allSettled(labels.map((l) => w.submit(unit(l))));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    assert.deepEqual(db.committed, [['u0', 'u1', 'u3', 'u4', 'u5', 'u6']]);
    assert.deepEqual(db.calls.filter((c) => c.kind === 'begin' || c.kind === 'commit').map((c) => c.kind), ['begin', 'commit']);
    assert.equal(w.commits, 1);
    assert.equal(w.units, 8);
  });

  test('a batch of one refused unit fails without a second try', async () => {
    const db = new FakeDatabase();
    db.refuse.set('bad', '54000');
    const w = db.writer();
    const e = await failure(w.submit(unit('bad')));
    await w.whenBacklogBelow(0, 0);
    assert.equal(e.refused, true);
    assert.deepEqual(db.calls.map((c) => c.kind), ['apply']);
    assert.deepEqual(db.released, [false]);
    assert.equal(w.healthy, true);
  });

  test('a connection failure while isolating rolls everything back and fails the whole batch', async () => {
    const db = new FakeDatabase();
    db.refuse.set('bad', '23505');
    const w = db.writer();
    // the whole batch is refused first (for 'bad'); the first savepoint then loses the connection
    db.failStatement.push(undefined, sqlError('08006'));
    const units = ['a', 'bad', 'c', 'd'].map((l) => w.submit(unit(l)));
    const errors = await Promise.all(units.map(failure));
    await w.whenBacklogBelow(0, 0);
    assert.deepEqual(errors.map((e) => e.refused), [false, false, false, false]);
    assert.deepEqual(db.committed, []);
    assert.ok(db.calls.some((c) => c.kind === 'rollback'));
    assert.deepEqual(db.released, [true]);
    assert.equal(w.healthy, false);
  });
});

describe('group commit: transient failures', () => {
  for (const [what, error] of [
    ['no connection', 'connect'],
    ['connection lost (08006)', sqlError('08006')],
    ['serialization failure (40001)', sqlError('40001')],
    ['admin shutdown (57P01)', sqlError('57P01')],
    ['an error without SQLSTATE', new Error('Connection terminated unexpectedly')],
  ] as const) {
    test(`${what}: the batch fails (retryable), the store is unhealthy until a later commit succeeds`, async () => {
      const db = new FakeDatabase();
      const w = db.writer();
      if (error === 'connect') db.failConnect.push(new Error('connect ECONNREFUSED'));
      else db.failStatement.push(error);
      const errors = await Promise.all(['a', 'b'].map((l) => failure(w.submit(unit(l)))));
      await w.whenBacklogBelow(0, 0);
      assert.deepEqual(errors.map((e) => [e.refused, /commit failed/.test(e.message)]), [[false, true], [false, true]]);
      assert.equal(w.healthy, false);
      assert.deepEqual(db.released, error === 'connect' ? [] : [true], 'a connection that failed is not reused');
      assert.equal(db.calls.filter((c) => c.kind === 'apply').length, error === 'connect' ? 0 : 1, 'the writer does not retry by itself');
      // The caller retries (a 3.1.1 publisher's held acknowledgement does): it commits, the store is healthy again
      await w.submit(unit('a'));
      await w.whenBacklogBelow(0, 0);
      assert.equal(w.healthy, true);
      assert.deepEqual(db.committed, [['a']]);
    });
  }
});

describe('group commit: watchdog and shutdown', () => {
  test('a commit unanswered after commitTimeoutMs is abandoned; its units fail; the next batch commits', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, commitTimeoutMs: 1000 });
    db.hang = true;
    const applied = db.nextStatement();
    const a = failure(w.submit(unit('a')));
    await applied;
    const b = w.submit(unit('b'));
    clock.advance(999);
    assert.equal(db.abandoned, 0);
    db.hang = false;
    clock.advance(1);
    const e = await a;
    assert.match(e.message, /unanswered after 1000 ms/);
    assert.equal(e.refused, false);
    assert.equal(db.abandoned, 1);
    await b;
    await w.whenBacklogBelow(0, 0);
    assert.deepEqual(db.committed, [['b']]);
    assert.deepEqual(db.released, [true, false], 'the abandoned connection is discarded');
    assert.equal(w.healthy, true, 'healthy again after the next commit');
  });

  test('close() waits for the commit in flight and commits what is queued; then new units are refused', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const a = (await db.writing(w, unit('a'))).done;
    const b = w.submit(unit('b'));
    let closed = false;
    const closing = w.close().then(() => { closed = true; });
    const c = w.submit(unit('c')); // still draining: it joins
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(closed, false);
    db.open();
    await Promise.all([a, b, c, closing]);
    assert.deepEqual(db.committed, [['a'], ['b', 'c']]);
    await assert.rejects(w.submit(unit('d')), /store is closed/);
  });

  test('close() ends within the commit timeout when the database stopped answering', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, commitTimeoutMs: 5000 });
    db.hang = true;
    const applied = db.nextStatement();
    const a = failure(w.submit(unit('a')));
    await applied;
    const closing = w.close();
    clock.advance(5000);
    await closing;
    assert.match((await a).message, /unanswered/);
    assert.equal(db.abandoned, 1);
  });

  test('a closed writer takes no new unit, and one closing does not hold its last batch for acknowledgements', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const message = { id: 1, hub: 'h', topicName: 't', payload: Buffer.from('x'), qos: 1 as const, retain: false, createdAtMs: 0 };
    const w = db.writer({ clock, holdMs: 60_000 });
    await w.close();
    await assert.rejects(w.submit((tx) => tx.insertMessage(message)), /store is closed/);
    const w2 = db.writer({ clock, holdMs: 60_000 });
    const sent = w2.submit((tx) => {
      tx.insertMessage(message);
      tx.enqueueDeliveries([{ id: 5, hub: 'h', clientId: 'c', messageId: 1, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 5, state: 'sent', sentAhead: true }]);
    });
    const closing = w2.close();
    await turnsUntil(() => db.committed.length === 1, 'the batch commits without waiting for the hold');
    await Promise.all([closing, sent]);
    assert.deepEqual(db.committed, [['+d5']]);
    assert.ok(!clock.armed.includes(60_000), 'no hold timer');
  });
});

describe('group commit: units that share a fate', () => {
  test('consecutive units with one fate key share one promise and one outcome; another key or none starts a new one', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const conn = {};
    const other = {};
    const a = w.submit(unit('a'), conn);
    const b = w.submit(unit('b'), conn);
    const c = w.submit(unit('c'), other);
    const d = w.submit(unit('d'), conn);
    const e = w.submit(unit('e'));
    const f = w.submit(unit('f'));
    assert.equal(a, b, 'b joined a');
    assert.notEqual(c, b);
    assert.notEqual(d, c, 'd follows another key: a new outcome');
    assert.notEqual(e, f, 'no key: one promise per unit');
    assert.equal(w.backlogUnits, 6, 'the backlog counts units, joined or not');
    await Promise.all([a, c, d, e, f]);
    assert.deepEqual(db.committed, [['a', 'b', 'c', 'd', 'e', 'f']]);
    await w.whenBacklogBelow(0, 0); // (settled just after the units resolve)
    assert.equal(w.units, 6);
  });

  test('a unit refused fails the units of its fate with it, and no other unit', async () => {
    const db = new FakeDatabase();
    db.refuse.set('bad', '22001');
    const w = db.writer();
    const publisher = {};
    const before = w.submit(unit('x'));
    const mine = [w.submit(unit('m1'), publisher), w.submit(unit('bad'), publisher), w.submit(unit('m3'), publisher)];
    const after = w.submit(unit('y'));
    const errors = await Promise.all(mine.map(failure));
    assert.ok(errors.every((e) => e.refused));
    await Promise.all([before, after]);
    assert.deepEqual(db.committed, [['x', 'y']], 'the others commit together; none of the publisher\'s units is written');
  });

  test('a unit does not join one in a batch that is already full', async () => {
    const db = new FakeDatabase();
    const w = db.writer({ maxBatchRows: 2 });
    const conn = {};
    const ps = ['u1', 'u2', 'u3', 'u4'].map((l) => w.submit(unit(l), conn));
    assert.equal(ps[0], ps[1]);
    assert.notEqual(ps[2], ps[1], 'u3 starts the next batch');
    assert.equal(ps[2], ps[3]);
    await Promise.all(ps);
    assert.deepEqual(db.committed, [['u1', 'u2'], ['u3', 'u4']]);
  });
});
