// The hub's retained caps count retained messages still being committed: pipelined retained
// publishes cannot all pass the check while their commits are in flight. Wills and server
// publishes are held to the caps too.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import { EngineClient, HeldStore, startEngine } from '../../helpers/engine.ts';

const settle = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

describe('retained caps with commits in flight', () => {
  test('5.0: of five pipelined retained publishes to new topics under a cap of three, two get 0x97', async () => {
    const store = new HeldStore();
    const { broker } = await startEngine(store, { maxRetainedMessages: 3 });
    const pub = new EngineClient(broker, 5);
    await pub.connect('pub', { clean: true });
    store.holding = true;
    for (let i = 1; i <= 5; i++) {
      pub.send({ cmd: 'publish', topic: `q/${i}`, payload: Buffer.from('v'), qos: 1, retain: true, dup: false, messageId: i } as Packet);
    }
    await settle();
    store.release();
    await pub.waitFor(() => pub.packets.filter((p) => p.cmd === 'puback').length === 5, 'five PUBACKs');
    const codes = pub.packets.filter((p) => p.cmd === 'puback').map((p) => (p as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0);
    assert.deepEqual(codes.map((c) => (c === 0x10 ? 0 : c)), [0, 0, 0, 0x97, 0x97]);
    assert.equal(broker.hub('default').retained.size, 3);
    await broker.shutdown();
  });

  test('a server publish over the cap is refused; a retained will over the cap is published without retain', async () => {
    const store = new HeldStore();
    const { broker } = await startEngine(store, { maxRetainedMessages: 1 });
    await broker.publishFromServer({ hub: 'default', topicName: 'full/1', payload: Buffer.from('a'), qos: 0, retain: true });
    await assert.rejects(broker.publishFromServer({ hub: 'default', topicName: 'full/2', payload: Buffer.from('b'), qos: 0, retain: true }), /retained message limit/);
    const sub = new EngineClient(broker, 5);
    await sub.connect('sub', { clean: true });
    await sub.subscribe(1, 'will/#', 0);
    const w = new EngineClient(broker, 5);
    w.send({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'w',
      will: { topic: 'will/w', payload: Buffer.from('gone'), qos: 0, retain: true, properties: {} },
    } as Packet);
    await w.waitFor((p) => p.cmd === 'connack', 'CONNACK');
    w.drop();
    const got = await sub.waitFor((p) => p.cmd === 'publish', 'the will') as Extract<Packet, { cmd: 'publish' }>;
    assert.equal(Buffer.from(got.payload).toString(), 'gone');
    assert.equal(broker.hub('default').retained.size, 1, 'the will was kept as a retained message over the cap');
    await broker.shutdown();
  });
});
