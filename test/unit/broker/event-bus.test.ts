// Broker events as data: the bus hands each subscriber the types it asked for, says when nobody
// wants a type (so emitters can skip building it), survives a failing subscriber, and the audit
// log turns events into today's audit rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuditLog, toAuditRow } from '../../../src/audit/audit-log.ts';
import { EventBus, EventType, type BrokerEvent, type EventSink } from '../../../src/broker/events.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { MemoryLogger } from '../../helpers/engine.ts';

const expired: BrokerEvent = { type: EventType.SessionExpired, hub: 'h', clientId: 'c' };
const dropped: BrokerEvent = { type: EventType.MessageDropped, hub: 'h', clientId: 'c', topicName: 't', reason: 'client_buffer_full' };

test('a subscriber gets only the event types it lists; one without a list gets all', () => {
  const bus = new EventBus(new MemoryLogger());
  const some: BrokerEvent[] = [];
  const all: BrokerEvent[] = [];
  bus.subscribe({ types: [EventType.SessionExpired], emit: (e) => some.push(e) });
  assert.equal(bus.wants(EventType.MessageDropped), false, 'nobody wants it yet');
  bus.subscribe({ emit: (e) => all.push(e) });
  assert.equal(bus.wants(EventType.MessageDropped), true);
  bus.emit(expired);
  bus.emit(dropped);
  assert.deepEqual(some, [expired]);
  assert.deepEqual(all, [expired, dropped]);
});

test('a failing subscriber is logged and the others still get the event', () => {
  const logger = new MemoryLogger();
  const bus = new EventBus(logger);
  const got: BrokerEvent[] = [];
  const failing: EventSink = { emit: () => { throw new Error('boom'); } };
  bus.subscribe(failing);
  bus.subscribe({ emit: (e) => got.push(e) });
  bus.emit(expired);
  assert.deepEqual(got, [expired]);
  assert.equal(logger.lines.filter((l) => l.level === 'error').length, 1);
});

test('the audit log writes audited events as rows with the time of the event, and skips the rest', async () => {
  const store = new MemoryStore();
  const clock = new FakeClock(1_700_000_000_000);
  const audit = new AuditLog(store, clock, new MemoryLogger());
  assert.equal(audit.types.includes(EventType.MessageDropped), false);
  assert.equal(toAuditRow(dropped), undefined);
  audit.emit({
    type: EventType.Disconnect, hub: 'h', clientId: 'c', remoteAddress: '10.0.0.1', reasonCode: 0x8e, initiatedBy: 'server', willPublished: true,
  });
  audit.emit(dropped);
  await store.transaction(() => undefined); // the writes above are committed before this unit
  assert.deepEqual(store.auditEvents, [{
    hub: 'h', event: 'disconnect', clientId: 'c', remoteAddress: '10.0.0.1', reasonCode: 0x8e, actor: 'server',
    detail: { initiatedBy: 'server', willPublished: true }, atMs: 1_700_000_000_000,
  }]);
});
