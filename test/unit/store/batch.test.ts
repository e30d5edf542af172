// Group-commit compaction (src/store/pg/batch.ts) and the array literals of the hot statement
// (src/store/pg/arrays.ts): pure, no database.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { boolArray, boolsOf, numberArray, numbersOf, packBytes, textArray, textsOf } from '../../../src/store/pg/arrays.ts';
import { Batch, replay, RecordingUnit } from '../../../src/store/pg/batch.ts';
import type { DeliveryRecord } from '../../../src/store/store.ts';
import type { Message } from '../../../src/mqtt/packet.ts';

const message = (id: number): Message => ({
  id, hub: 'h', topicName: 't', payload: Buffer.from('p'), qos: 1, retain: false, createdAtMs: 1,
});
const delivery = (id: number, messageId: number, over: Partial<DeliveryRecord> = {}): DeliveryRecord => ({
  id, hub: 'h', clientId: 'c', messageId, qos: 1, retain: false, subscriptionIds: [], shareKey: undefined, packetId: 7, state: 'sent', ...over,
});

/** A batch's change of one delivery is a delete and nothing else. */
function deleteOnly(c: { delete: boolean; insert?: unknown; update?: unknown } | undefined): boolean {
  return c !== undefined && c.delete && c.insert === undefined && c.update === undefined;
}

describe('Batch', () => {
  test('rows count what is to be written: an insert cancelled by its delete counts for neither, here or when taken back', () => {
    const b = new Batch();
    b.insertMessage(message(1));
    b.enqueueDeliveries([delivery(10, 1, { sentAhead: true }), delivery(11, 1, { sentAhead: true })]);
    assert.equal(b.rows, 3);
    b.deleteDelivery(10);
    assert.equal(b.rows, 2, 'the message and delivery 11');
    b.deleteDelivery(99); // a delivery of an earlier batch: a row to delete
    assert.equal(b.rows, 3);
    b.holding = true;
    const next = new Batch();
    next.behind = b;
    next.deleteDelivery(11);
    next.endUnit(true);
    assert.equal(b.rows, 2, 'delivery 11 taken back from the held batch');
    assert.equal(next.rows, 0, 'and its delete is not written either');
  });

  test('a delivery inserted and deleted in one batch leaves nothing to write', () => {
    const b = new Batch();
    b.insertMessage(message(1));
    b.enqueueDeliveries([delivery(10, 1, { sentAhead: true })]);
    assert.equal(b.cancellable, 1);
    b.deleteDelivery(10);
    assert.equal(b.deliveries.size, 0);
    assert.equal(b.cancellable, 0);
    // the message row stays in the batch; the writer skips messages no inserted delivery references
    assert.equal(b.messages.size, 1);
    assert.ok(b.isEmpty, 'no delivery, inbound id or cold change: nothing to apply');
  });

  test('a delete of a delivery inserted by an earlier batch is kept', () => {
    const b = new Batch();
    b.deleteDelivery(10);
    assert.ok(deleteOnly(b.deliveries.get(10)));
    assert.ok(!b.isEmpty);
  });

  test('only deliveries sent ahead of their commit count as cancellable; the last cancellation calls onAllCancelled once', () => {
    const b = new Batch();
    let calls = 0;
    b.onAllCancelled = () => { calls++; };
    b.enqueueDeliveries([
      delivery(1, 1, { sentAhead: true }), delivery(2, 1, { state: 'queued', packetId: 0 }), delivery(3, 1, { qos: 2 }), delivery(4, 1, { sentAhead: true }),
      delivery(5, 1), // in flight but held for its commit: no PUBACK can come before it
    ]);
    assert.equal(b.cancellable, 2);
    b.deleteDelivery(2); // queued: not counted
    b.deleteDelivery(1);
    assert.equal(calls, 0);
    b.deleteDelivery(4);
    assert.equal(calls, 1);
    assert.equal(b.cancellable, 0);
    assert.deepEqual([...b.deliveries.keys()], [3, 5]);
  });

  test('a delete in the batch behind a held batch cancels the held insert; once writing starts it is a row of its own', () => {
    const held = new Batch();
    let calls = 0;
    held.onAllCancelled = () => { calls++; };
    held.enqueueDeliveries([delivery(1, 1, { sentAhead: true }), delivery(2, 1, { sentAhead: true }), delivery(3, 1, { state: 'queued', packetId: 0 })]);
    const next = new Batch();
    next.behind = held;
    next.deleteDelivery(1); // not held yet (being built): kept as a delete
    assert.ok(deleteOnly(next.deliveries.get(1)));
    next.endUnit(true);
    assert.ok(deleteOnly(next.deliveries.get(1)));
    held.holding = true;
    next.deleteDelivery(2);
    assert.ok(deleteOnly(next.deliveries.get(2)), 'decided when the unit is complete');
    next.endUnit(true); // a unit of deletes only (an acknowledgement)
    assert.equal(next.deliveries.has(2), false, 'nothing to write in the next batch');
    assert.equal(held.deliveries.has(2), false, 'nor in the held one');
    assert.equal(calls, 0, 'delivery 1 is still counted (its delete went to the next batch)');
    // updated in the next batch first: the delete follows the update there (the insert stays)
    next.updateDelivery(3, 7, 'sent');
    next.deleteDelivery(3);
    assert.ok(deleteOnly(next.deliveries.get(3)));
    assert.ok(held.deliveries.get(3)?.insert);
    assert.deepEqual(held.lateDeletes, [2]);
    // A unit that writes more than deletes (a handoff: delete one delivery, insert another) keeps its delete
    held.enqueueDeliveries([delivery(4, 1, { sentAhead: true })]);
    next.deleteDelivery(4);
    next.enqueueDeliveries([delivery(5, 1, { state: 'queued', packetId: 0 })]);
    next.endUnit(false);
    assert.ok(deleteOnly(next.deliveries.get(4)));
    assert.ok(held.deliveries.get(4)?.insert, 'the held insert stays: both rows commit, each with its own unit');
    held.holding = false;
    next.deleteDelivery(99);
    assert.ok(deleteOnly(next.deliveries.get(99)));
  });

  test('deleteSession voids the session\'s inserts, cancellable ones included', () => {
    const b = new Batch();
    let calls = 0;
    b.onAllCancelled = () => { calls++; };
    b.enqueueDeliveries([delivery(1, 1, { sentAhead: true }), delivery(2, 1, { clientId: 'other' })]);
    b.deleteSession('h', 'c');
    assert.equal(b.cancellable, 0);
    assert.equal(calls, 1);
    assert.deepEqual([...b.deliveries.keys()], [2]);
  });

  test('an update of a delivery inserted in the same batch is folded into the insert', () => {
    const b = new Batch();
    b.enqueueDeliveries([delivery(1, 1, { state: 'queued', packetId: 0 })]);
    b.updateDelivery(1, 42, 'sent');
    assert.equal(b.deliveries.get(1)?.insert?.packetId, 42);
    assert.equal(b.deliveries.get(1)?.insert?.state, 'sent');
    assert.equal(b.deliveries.get(1)?.update, undefined);
  });

  test('replay of recorded units gives the same net effect', () => {
    const shared = new Batch();
    const u1 = new RecordingUnit(shared);
    u1.insertMessage(message(1));
    u1.enqueueDeliveries([delivery(10, 1)]);
    const r1 = { start: 0, end: shared.log.length };
    const u2 = new RecordingUnit(shared);
    u2.deleteDelivery(10);
    u2.deleteDelivery(11);
    const r2 = { start: r1.end, end: shared.log.length };
    const u3 = new RecordingUnit(shared);
    u3.revokePermission('h', 'user', 'u', 'publish', null); // (five arguments: a full log record)
    u3.insertMessage(message(2));
    const r3 = { start: r2.end, end: shared.log.length };
    const again = replay(shared.log, [r1, r2, r3]);
    assert.deepEqual([...again.deliveries], [...shared.deliveries]);
    assert.deepEqual([...again.messages], [...shared.messages]);
    assert.deepEqual(again.access, shared.access);
    assert.equal(again.cancellable, shared.cancellable);
    // One unit alone: only its calls
    const alone = replay(shared.log, [r3]);
    assert.deepEqual([...alone.messages.keys()], [2]);
    assert.equal(alone.deliveries.size, 0);
  });
});

describe('array literals', () => {
  test('numbers, with NULL for missing values', () => {
    assert.equal(numberArray([]), '{}');
    assert.equal(numberArray([1, 2, 1795706220133]), '{1,2,1795706220133}');
    assert.equal(numberArray([1, null, undefined]), '{1,NULL,NULL}');
  });

  test('booleans', () => {
    assert.equal(boolArray([]), '{}');
    assert.equal(boolArray([true, false, true]), '{t,f,t}');
  });

  test('text: every element quoted, quotes and backslashes escaped, NULL unquoted', () => {
    assert.equal(textArray([]), '{}');
    assert.equal(textArray(['a', 'b c', '', null]), '{"a","b c","",NULL}');
    assert.equal(textArray(['say "hi"', 'back\\slash', '{,}']), '{"say \\"hi\\"","back\\\\slash","{,}"}');
    assert.equal(textArray(['NULL']), '{"NULL"}', 'the string NULL stays a string');
  });

  test('the same literals built from a field of each record', () => {
    const rows = [{ n: 1, b: true, t: 'say "hi"' }, { n: null, b: false, t: 'back\\slash' }, { n: 3, b: true, t: null }];
    assert.equal(numbersOf(rows, (r) => r.n), '{1,NULL,3}');
    assert.equal(boolsOf(rows, (r) => r.b), '{t,f,t}');
    assert.equal(textsOf(rows, (r) => r.t), '{"say \\"hi\\"","back\\\\slash",NULL}');
    assert.equal(textsOf([], (r: { t: string }) => r.t), '{}');
    assert.equal(textsOf([{ t: 'a' }, { t: '' }, { t: 'NULL' }], (r) => r.t), '{"a","","NULL"}');
  });

  test('payloads packed into one buffer with their lengths', () => {
    const p = packBytes([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('xyz')]);
    assert.equal(p.bytes.toString(), 'abxyz');
    assert.equal(p.lengths, '{2,0,3}');
  });
});
