// publishFromServer applies the same edge rules as a client PUBLISH: topic caps and the hub rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allowAll, allowAnonymous } from '../../../src/auth/auth.ts';
import { Broker } from '../../../src/broker/broker.ts';
import { defaultBrokerOptions } from '../../../src/broker/options.ts';
import { systemClock, type Logger } from '../../../src/broker/ports.ts';
import { MemoryStore } from '../../../src/store/memory-store.ts';

const logger: Logger = { info() {}, debug() {}, warn() {}, error() {} };

test('a server publish over the topic caps or to an invalid hub is refused; nothing is stored', async () => {
  const store = new MemoryStore();
  const broker = new Broker({
    options: { ...defaultBrokerOptions, maxTopicBytes: 32, maxTopicLevels: 4 }, store, clock: systemClock, logger,
    authenticator: allowAnonymous, authorizer: allowAll,
  });
  await broker.start();
  const base = { hub: 'default', payload: Buffer.from('x'), qos: 1 as const, retain: true };
  await assert.rejects(broker.publishFromServer({ ...base, topicName: 'a'.repeat(33) }), RangeError);
  await assert.rejects(broker.publishFromServer({ ...base, topicName: 'a/b/c/d/e' }), RangeError);
  await assert.rejects(broker.publishFromServer({ ...base, hub: 'bad\u0000hub', topicName: 'a' }), RangeError);
  assert.equal(broker.hubs.has('bad\u0000hub'), false);
  assert.equal(await broker.publishFromServer({ ...base, topicName: 'a/b/c/d' }), 0);
  assert.deepEqual([...broker.hub('default').retained.values()].map((m) => m.topicName), ['a/b/c/d']);
  await broker.shutdown();
});
