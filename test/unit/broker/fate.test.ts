// Units of one fate (Store.transaction's `fate`): a publisher's publishes and a subscriber's
// acknowledgement deletes are submitted with a key of their own, so that a store may commit
// consecutive ones as one; other clients' units never share it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { UnitOfWork } from '../../../src/store/store.ts';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

/** A store that records the fate key of every unit, with the names of what the unit does. */
class FateStore extends FaultyStore {
  readonly units: Array<{ fate: object | undefined; ops: string[] }> = [];
  override transaction(build: (tx: UnitOfWork) => void, fate?: object): Promise<void> {
    const ops: string[] = [];
    build(new Proxy({} as UnitOfWork, { get: (_t, name: string) => () => { ops.push(name); } }));
    this.units.push({ fate, ops });
    return super.transaction(build);
  }
}

const publish = (topic: string, messageId: number, qos: 0 | 1, retain = false): Packet =>
  ({ cmd: 'publish', topic, payload: Buffer.from(`m${messageId}`), qos, messageId, retain, dup: false } as Packet);

describe('fate keys of units', () => {
  test('each publisher\'s units carry its own key; a persistent subscriber\'s acknowledgement deletes carry its outbox\'s', async () => {
    const store = new FateStore();
    const { broker } = await startEngine(store);
    const sub = new EngineClient(broker, 5);
    await sub.connect('durable-sub', { clean: false, expirySec: 3600 });
    await sub.subscribe(1, 'f/#', 1);
    sub.autoAck = true;
    const [a, b] = [new EngineClient(broker, 5), new EngineClient(broker, 4)];
    await a.connect('pub-a', { clean: true });
    await b.connect('pub-b', { clean: true });
    store.units.length = 0;
    for (let i = 1; i <= 3; i++) a.send(publish('f/a', i, 1));
    for (let i = 1; i <= 2; i++) b.send(publish('f/b', i, 1));
    a.send(publish('f/retained', 9, 0, true));
    await sub.waitFor(() => sub.packets.filter((p) => p.cmd === 'publish').length === 5, 'five messages');
    await a.waitFor((p) => p.cmd === 'puback' && p.messageId === 3, 'PUBACK 3');
    await b.waitFor((p) => p.cmd === 'puback' && p.messageId === 2, 'PUBACK 2');
    const publishes = store.units.filter((u) => u.ops.includes('insertMessage') || u.ops.includes('putRetained'));
    assert.equal(publishes.length, 6);
    const fateA = publishes[0]!.fate;
    assert.ok(fateA !== undefined, 'a publisher\'s unit has a fate key');
    assert.deepEqual(publishes.map((u) => u.fate === fateA), [true, true, true, false, false, true]);
    assert.ok(publishes[3]!.fate !== undefined && publishes[3]!.fate === publishes[4]!.fate, 'the other publisher has its own key');
    for (let i = 0; i < 100 && !store.units.some((u) => u.ops.length === 1 && u.ops[0] === 'deleteDelivery'); i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const deletes = store.units.filter((u) => u.ops.length === 1 && u.ops[0] === 'deleteDelivery');
    assert.ok(deletes.length > 0, 'acknowledgements delete their deliveries');
    assert.ok(deletes.every((u) => u.fate !== undefined && u.fate === deletes[0]!.fate), 'one key for the subscriber\'s deletes');
    assert.ok(deletes[0]!.fate !== fateA && deletes[0]!.fate !== publishes[3]!.fate);
    await broker.shutdown();
  });
});
