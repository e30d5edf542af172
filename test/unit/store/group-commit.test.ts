// The group-commit writer (src/store/pg/group-commit.ts) on a fake database: order of resolution,
// batching while a commit is in flight, batch caps, backlog, and the hold for QoS 1 acknowledgements.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../../src/mqtt/packet.ts';
import type { DeliveryRecord, UnitOfWork } from '../../../src/store/store.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { FakeDatabase, turns, turnsUntil, unit } from './fake-database.ts';

/** Settles in the order the promises settle, recording each label. */
function track(order: string[], label: string, p: Promise<void>): Promise<void> {
  return p.then(() => { order.push(label); }, (e: unknown) => { order.push(`${label}:failed`); throw e; });
}

const retained = (label: string, payloadBytes: number) => (tx: UnitOfWork): void => {
  const m: Message = { id: 1, hub: 'h', topicName: `t/${label}`, payload: Buffer.alloc(payloadBytes), qos: 0, retain: true, createdAtMs: 0 };
  tx.putRetained(m);
  tx.appendAudit({ hub: 'h', event: label, atMs: 0 });
};

const sentAhead = (id: number): DeliveryRecord => ({
  id, hub: 'h', clientId: 'c', messageId: 1, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: id, state: 'sent', sentAhead: true,
});
const message: Message = { id: 1, hub: 'h', topicName: 't', payload: Buffer.from('x'), qos: 1, retain: false, createdAtMs: 0 };

describe('group commit: order and batching', () => {
  test('units submitted in one turn share one commit and resolve in submission order', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const order: string[] = [];
    await Promise.all(['a', 'b', 'c'].map((l) => track(order, l, w.submit(unit(l)))));
    await w.whenBacklogBelow(0, 0); // (the connection goes back after the units are settled)
    assert.deepEqual(db.committed, [['a', 'b', 'c']]);
    assert.deepEqual(order, ['a', 'b', 'c']);
    assert.equal(w.commits, 1);
    assert.equal(w.units, 3);
    assert.deepEqual(db.released, [false]);
  });

  test('units submitted while a commit is in flight form the next batch, resolved after it', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const order: string[] = [];
    db.hold();
    const applied = db.nextStatement();
    const a = track(order, 'a', w.submit(unit('a')));
    await applied;
    const rest = ['b', 'c', 'd'].map((l) => track(order, l, w.submit(unit(l))));
    assert.deepEqual(order, [], 'nothing resolves before its commit');
    db.open();
    await Promise.all([a, ...rest]);
    assert.deepEqual(db.committed, [['a'], ['b', 'c', 'd']]);
    assert.deepEqual(order, ['a', 'b', 'c', 'd']);
  });

  test('units submitted over several event-loop turns of one commit all form the next batch', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const a = (await db.writing(w, unit('a'))).done;
    const b = w.submit(unit('b'));
    await turns(5);
    const c = w.submit(unit('c'));
    await turns(5);
    const d = w.submit(unit('d'));
    db.open();
    await Promise.all([a, b, c, d]);
    assert.deepEqual(db.committed, [['a'], ['b', 'c', 'd']], 'one commit after the one in flight, not one per turn');
  });

  test('a batch that stayed open through a write and then took a delivery sent ahead is not held after it', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const first = (await db.writing(w, unit('first'))).done;
    const plain = w.submit(unit('plain')); // not to be held: the batch stays open while 'first' is written
    await turns(5);
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10)]); });
    db.open();
    await Promise.all([first, plain, sent]);
    assert.deepEqual(db.committed, [['first'], ['plain', '+d10']]);
    assert.ok(!clock.armed.includes(50), 'no hold timer was armed');
  });

  test('a batch takes no more units once it reaches maxBatchRows; the unit that reaches it is its last', async () => {
    const db = new FakeDatabase();
    const w = db.writer({ maxBatchRows: 3 });
    const order: string[] = [];
    const labels = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
    await Promise.all(labels.map((l) => track(order, l, w.submit(unit(l)))));
    assert.deepEqual(db.committed, [['u1', 'u2', 'u3'], ['u4', 'u5', 'u6'], ['u7']]);
    assert.deepEqual(order, labels, 'resolved in submission order across commits');
  });

  test('a batch takes no more units once it carries maxBatchBytes; a unit larger than that still goes, alone', async () => {
    const db = new FakeDatabase();
    const w = db.writer({ maxBatchBytes: 100 });
    const order: string[] = [];
    const units = [retained('a', 60), retained('b', 60), retained('big', 500), retained('c', 10), retained('d', 10)];
    const labels = ['a', 'b', 'big', 'c', 'd'];
    await Promise.all(units.map((u, i) => track(order, labels[i]!, w.submit(u))));
    assert.deepEqual(db.committed, [['a', 'b'], ['big'], ['c', 'd']]);
    assert.deepEqual(order, labels);
  });

  test('a batch whose rows all cancel out commits without a connection', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    await Promise.all([
      w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10)]); }),
      w.submit((tx) => tx.deleteDelivery(10)),
    ]);
    assert.equal(db.connects, 0);
    assert.equal(w.commits, 1);
    assert.equal(w.units, 2);
  });
});

describe('group commit: commit observer', () => {
  test('onCommit hears each written batch with its rows and latency; not a batch with nothing to write', async () => {
    const db = new FakeDatabase();
    const clock = new FakeClock();
    const seen: Array<[number, number]> = [];
    const w = db.writer({ maxBatchRows: 2, clock, onCommit: (rows, ms) => { seen.push([rows, ms]); } });
    await Promise.all(['a', 'b', 'c'].map((l) => w.submit(unit(l))));
    await w.whenBacklogBelow(0, 0); // (units resolve before their batch is observed and settled)
    assert.deepEqual(seen, [[2, 0], [1, 0]], 'two batches: two rows, then one (the fake clock did not move)');
    await Promise.all([w.submit((tx) => tx.enqueueDeliveries([sentAhead(7)])), w.submit((tx) => tx.deleteDelivery(7))]);
    await w.whenBacklogBelow(0, 0);
    assert.equal(seen.length, 2, 'a batch whose rows cancel out writes nothing and is not observed');
  });

  test('an observer that throws does not fail the commit', async () => {
    const db = new FakeDatabase();
    const w = db.writer({ onCommit: () => { throw new Error('observer'); } });
    await w.submit(unit('a'));
    assert.equal(w.healthy, true);
    assert.deepEqual(db.committed, [['a']]);
  });
});

describe('group commit: backlog', () => {
  test('units and bytes count from submission until their batch settles; whenBacklogBelow waits for that', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    db.hold();
    const applied = db.nextStatement();
    const a = w.submit(retained('a', 100));
    const b = w.submit(retained('b', 50));
    assert.equal(w.backlogUnits, 2);
    assert.equal(w.backlogBytes, 100 + 't/a'.length + 50 + 't/b'.length);
    assert.equal(await Promise.race([w.whenBacklogBelow(2, 1000), 'waits']), undefined, 'already below');
    let drained = false;
    const below = w.whenBacklogBelow(0, 0).then(() => { drained = true; });
    await applied;
    assert.equal(drained, false);
    db.open();
    await Promise.all([a, b, below]);
    assert.equal(drained, true);
    assert.equal(w.backlogUnits, 0);
    assert.equal(w.backlogBytes, 0);
  });

  test('failed units leave the backlog too', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    db.failConnect.push(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    const below = w.whenBacklogBelow(0, 0);
    await assert.rejects(w.submit(retained('a', 10)), /commit failed/);
    await below;
    assert.equal(w.backlogUnits, 0);
    assert.equal(w.backlogBytes, 0);
  });
});

describe('group commit: holding a batch for acknowledgements of QoS 1 deliveries sent ahead', () => {
  test('the last acknowledgement ends the hold, and a batch left with nothing to write needs no connection', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10), sentAhead(11)]); });
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    assert.deepEqual(clock.armed, [50]);
    const acks = [w.submit((tx) => tx.deleteDelivery(10))];
    clock.advance(49);
    assert.equal(db.connects, 0, 'still holding');
    acks.push(w.submit((tx) => tx.deleteDelivery(11)));
    await Promise.all([sent, ...acks]);
    assert.equal(db.connects, 0);
    assert.equal(clock.pending, 0, 'the hold timer was cancelled');
  });

  test('without acknowledgements the batch commits holdMs after it was sealed; units meanwhile form the next batch', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10)]); });
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    clock.advance(49);
    const later = w.submit(unit('later'));
    assert.equal(db.connects, 0);
    clock.advance(1);
    await Promise.all([sent, later]);
    assert.deepEqual(db.committed, [['+d10'], ['later']], 'the held batch, then the units submitted during its hold');
  });

  test('a held batch still takes acknowledgements back while it waits for the batch being written', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 5 });
    const first = (await db.writing(w, unit('first'))).done; // being written (and the database is slow)
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10), sentAhead(11)]); });
    await turnsUntil(() => clock.armed.includes(5), 'the hold timer is armed (next to the watchdog of the commit being written)');
    clock.advance(5); // its hold is over; it now waits for 'first'
    await turns(5);
    const ack = w.submit((tx) => tx.deleteDelivery(10));
    db.open();
    await Promise.all([first, sent, ack]);
    assert.deepEqual(db.committed, [['first'], ['+d11']], 'delivery 10 is written nowhere: neither its insert nor its delete');
  });

  test('an acknowledgement submitted during the hold takes its insert back out of the held batch', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const order: string[] = [];
    const sent = track(order, 'sent', w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10), sentAhead(11)]); }));
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    const other = track(order, 'other', w.submit(unit('other')));
    const ack = track(order, 'ack', w.submit((tx) => tx.deleteDelivery(10)));
    clock.advance(50);
    await Promise.all([sent, other, ack]);
    assert.deepEqual(db.committed, [['+d11'], ['other']], 'delivery 10 is written nowhere');
    assert.deepEqual(order, ['sent', 'other', 'ack'], 'still resolved in submission order');
  });

  test('a held batch refused for one unit\'s data is replayed without the inserts given back during its hold', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    db.refuse.set('bad', '22001');
    const w = db.writer({ clock, holdMs: 50 });
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10), sentAhead(11)]); });
    const bad = w.submit(unit('bad'));
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    const ack = w.submit((tx) => tx.deleteDelivery(10));
    clock.advance(50);
    await sent;
    await assert.rejects(bad);
    await ack;
    assert.deepEqual(db.committed, [['+d11']], 'the good unit commits without delivery 10');
  });

  test('a batch sealed during a hold (it was full) commits after the held batch, its delete after the insert', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50, maxBatchRows: 1 });
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10)]); });
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    // The next batch fills up at once: the ack lands in the batch after it (not behind the held one)
    const other = w.submit(unit('other'));
    const ack = w.submit((tx) => tx.deleteDelivery(10));
    clock.advance(50);
    await Promise.all([sent, other, ack]);
    assert.deepEqual(db.committed, [['+d10'], ['other'], ['-d10']], 'the insert commits first, then its delete');
  });

  test('an acknowledgement takes back a held insert; a unit that also writes other rows (a handoff) keeps its delete with them', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const sent = w.submit((tx) => { tx.insertMessage(message); tx.enqueueDeliveries([sentAhead(10), sentAhead(11)]); });
    await turnsUntil(() => clock.pending === 1, 'the hold timer is armed');
    // A shared-subscription handoff: delivery 10 moves to another member (delete + insert in one unit)
    const handoff = w.submit((tx) => {
      tx.deleteDelivery(10);
      tx.insertMessage(message);
      tx.enqueueDeliveries([{ ...sentAhead(99), clientId: 'other', sentAhead: false, state: 'queued', packetId: 0 }]);
    });
    const ack = w.submit((tx) => tx.deleteDelivery(11));
    clock.advance(50);
    await Promise.all([sent, handoff, ack]);
    assert.deepEqual(db.committed, [['+d10'], ['-d10', '+d99']], 'the handoff\'s delete commits with its insert; the acknowledgement took 11 back');
  });

  test('a held batch is not kept alive by the batches after it', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    const submitted: Array<Promise<void>> = [];
    for (let i = 1; i <= 5; i++) {
      submitted.push(w.submit((tx) => { tx.insertMessage({ ...message, id: i }); tx.enqueueDeliveries([{ ...sentAhead(i), messageId: i }]); }));
      await turnsUntil(() => clock.pending === 1, `hold ${i} armed`);
      clock.advance(50);
    }
    await Promise.all(submitted);
    assert.equal(db.committed.length, 5);
    assert.equal(db.heldBehind(), 0, 'no batch written points to the one held before it');
  });

  test('a batch with no delivery sent ahead is not held', async () => {
    const clock = new FakeClock();
    const db = new FakeDatabase();
    const w = db.writer({ clock, holdMs: 50 });
    await w.submit(unit('a'));
    assert.deepEqual(clock.armed.filter((ms) => ms === 50), []);
    assert.deepEqual(db.committed, [['a']]);
  });
});

describe('group commit: one commit at a time', () => {
  const insert = (id: number) => (tx: UnitOfWork): void => {
    tx.insertMessage({ ...message, id: id * 100 });
    tx.enqueueDeliveries([{ ...sentAhead(id), messageId: id * 100, sentAhead: false, state: 'queued', packetId: 0 }]);
  };

  test('a batch is written only once the one before it has committed, even on rows of its own', async () => {
    const db = new FakeDatabase();
    const w = db.writer();
    const releaseFirst = db.holdLabel('+d1');
    const first = w.submit(insert(1));
    await turnsUntil(() => db.applied.length === 1, 'the first batch is being written');
    const second = w.submit(insert(2));
    await turns(5);
    assert.equal(db.applied.length, 1, 'the second waits');
    releaseFirst();
    await Promise.all([first, second]);
    assert.deepEqual(db.committed, [['+d1'], ['+d2']]);
  });
});
