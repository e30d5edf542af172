// Session state: packet-id allocation [MQTT-2.2.1-3] and outbound topic aliases (MQTT 5 §3.3.2.3.4).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OutboundAliases, PacketIdAllocator } from '../../../src/mqtt/session-state.ts';

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('PacketIdAllocator', () => {
  test('starts at 1 and counts up', () => {
    const a = new PacketIdAllocator();
    const none = new Set<number>();
    assert.deepEqual([a.allocate(none), a.allocate(none), a.allocate(none)], [1, 2, 3]);
  });

  test('[MQTT-2.2.1-3] skips ids still in use', () => {
    const a = new PacketIdAllocator();
    const inUse = new Set([1, 2, 4]);
    assert.equal(a.allocate(inUse), 3);
    assert.equal(a.allocate(inUse), 5);
  });

  test('wraps from 65535 to 1 and never returns 0 while ids are free', () => {
    const a = new PacketIdAllocator();
    const none = new Set<number>();
    for (let i = 1; i <= 65535; i++) assert.equal(a.allocate(none), i);
    assert.equal(a.allocate(none), 1, 'wrapped');
    const inUse = new Set([2, 3]);
    assert.equal(a.allocate(inUse), 4, 'skips in-use ids after the wrap');
  });

  test('wrapping skips in-use ids at the top and the bottom of the range', () => {
    const a = new PacketIdAllocator();
    const none = new Set<number>();
    for (let i = 1; i <= 65533; i++) a.allocate(none);
    const inUse = new Set([65534, 65535, 1]);
    assert.equal(a.allocate(inUse), 2);
  });

  test('returns 0 when all 65535 ids are in use', () => {
    const a = new PacketIdAllocator();
    const all = new Set(range(1, 65535));
    assert.equal(a.allocate(all), 0);
  });

  test('finds the single free id', () => {
    const a = new PacketIdAllocator();
    const all = new Set(range(1, 65535));
    all.delete(40000);
    assert.equal(a.allocate(all), 40000);
  });

  test('works with a Map of inflight deliveries', () => {
    const a = new PacketIdAllocator();
    const inflight = new Map<number, string>([[1, 'x']]);
    assert.equal(a.allocate(inflight), 2);
  });
});

describe('OutboundAliases', () => {
  const use = (aliases: OutboundAliases, topic: string): { alias: number; isNew: boolean } | undefined => {
    const a = aliases.lookup(topic);
    if (a?.isNew) aliases.record(topic, a.alias);
    return a;
  };

  test('assigns aliases 1..max, new on first use and known afterwards', () => {
    const aliases = new OutboundAliases(2);
    assert.deepEqual(use(aliases, 'a'), { alias: 1, isNew: true });
    assert.deepEqual(use(aliases, 'a'), { alias: 1, isNew: false });
    assert.deepEqual(use(aliases, 'b'), { alias: 2, isNew: true });
    assert.deepEqual(use(aliases, 'b'), { alias: 2, isNew: false });
  });

  test('[MQTT-3.1.2-25] an alias offered for a packet that was never sent is offered again', () => {
    const aliases = new OutboundAliases(2);
    assert.deepEqual(aliases.lookup('a'), { alias: 1, isNew: true });
    assert.deepEqual(aliases.lookup('a'), { alias: 1, isNew: true }, 'not recorded: still new');
  });

  test('[MQTT-3.3.2-10] never exceeds the client’s Topic Alias Maximum', () => {
    const aliases = new OutboundAliases(2);
    use(aliases, 'a');
    use(aliases, 'b');
    assert.equal(use(aliases, 'c'), undefined);
    assert.deepEqual(use(aliases, 'a'), { alias: 1, isNew: false }, 'existing aliases still work');
  });

  test('a maximum of 0 means no aliases', () => {
    const aliases = new OutboundAliases(0);
    assert.equal(use(aliases, 'a'), undefined);
    assert.equal(use(aliases, 'a'), undefined);
  });
});
