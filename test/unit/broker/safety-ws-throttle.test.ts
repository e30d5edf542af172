// The store is behind and the transport cannot pause reading (WebSocket): a retained QoS 0 publisher,
// which waits for no acknowledgement, is disconnected with 0x89 (Server busy) once the backlog's
// bytes are over their limit, rather than piling up payloads without bound. Over the unit limit
// alone its messages are still taken (the hub's retained caps bound how many can wait). QoS 1
// publishers are held by their held acknowledgements.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { Broker } from '../../../src/broker/broker.ts';
import { EngineClient, FaultyStore, startEngine } from '../../helpers/engine.ts';

/** A store that reports a backlog far over the broker's limits (or just over its unit limit) until `catchUp`. */
class BehindStore extends FaultyStore {
  behind = false;
  unitsOnly = false;
  #caughtUp: Array<() => void> = [];
  override get backlogUnits(): number {
    // (units only: just over the default limit of 50,000, under four times it)
    return this.behind ? (this.unitsOnly ? 50_001 : 1_000_000_000) : 0;
  }
  override get backlogBytes(): number {
    return this.behind && !this.unitsOnly ? 1_000_000_000_000 : 0;
  }
  override whenBacklogBelow(): Promise<void> {
    return this.behind ? new Promise((resolve) => this.#caughtUp.push(resolve)) : Promise.resolve();
  }
  catchUp(): void {
    this.behind = false;
    for (const r of this.#caughtUp.splice(0)) r();
  }
}

const retainedQos0 = (topic: string, payload: string): Packet => ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: true, dup: false } as Packet);

/** A connected publisher on a broker whose store is now behind (far behind, or just over its unit limit). */
async function behindPublisher(clientId: string, version: 4 | 5, unitsOnly = false): Promise<{ store: BehindStore; broker: Broker; pub: EngineClient }> {
  const store = new BehindStore();
  store.unitsOnly = unitsOnly;
  const { broker } = await startEngine(store);
  const pub = new EngineClient(broker, version);
  await pub.connect(clientId, { clean: true });
  store.behind = true;
  return { store, broker, pub };
}

describe('retained QoS 0 on a transport that cannot pause, while the store is behind', () => {
  test('5.0: the publisher gets DISCONNECT 0x89 once throttled; others keep working after the store catches up', async () => {
    const { store, broker, pub } = await behindPublisher('pub', 5);
    pub.send(retainedQos0('r/1', 'a')); // taken; the connection is throttled
    pub.send(retainedQos0('r/2', 'b'));
    const disconnect = await pub.waitFor((p) => p.cmd === 'disconnect', 'DISCONNECT') as Extract<Packet, { cmd: 'disconnect' }>;
    assert.equal(disconnect.reasonCode, 0x89);
    await pub.whenClosed();
    store.catchUp();
    const other = new EngineClient(broker, 5);
    await other.connect('other', { clean: true });
    const sub = await other.subscribe(1, 'r/#', 0);
    assert.deepEqual(sub.granted, [0]);
    const got = await other.waitFor((p) => p.cmd === 'publish', 'the retained message');
    assert.equal((got as Extract<Packet, { cmd: 'publish' }>).topic, 'r/1');
    await broker.shutdown();
  });

  test('over the unit limit only: a bulk of retained QoS 0 publishes is taken and stored, the publisher stays', async () => {
    const { store, broker, pub } = await behindPublisher('bulk', 5, true);
    for (let i = 0; i < 50; i++) pub.send(retainedQos0(`b/${i}`, `v${i}`));
    // (its replies are held until the store catches up: the PINGRESP comes after that)
    const pong = pub.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP');
    pub.send({ cmd: 'pingreq' } as Packet);
    store.catchUp();
    await pong;
    assert.equal(pub.packets.some((p) => p.cmd === 'disconnect'), false, 'not disconnected');
    assert.equal(pub.closed, false);
    const other = new EngineClient(broker, 5);
    await other.connect('reader', { clean: true });
    await other.subscribe(1, 'b/#', 0);
    const topics = new Set<string>();
    await other.waitFor((p) => p.cmd === 'publish' && topics.add((p as Extract<Packet, { cmd: 'publish' }>).topic).size === 50, 'all 50 retained messages');
    await broker.shutdown();
  });

  test('over the unit limit only: a retained clearing (empty payload, not bounded by the retained caps) gets 0x89', async () => {
    const { store, broker, pub } = await behindPublisher('clearer', 5, true);
    pub.send(retainedQos0('c/1', 'a')); // taken; the connection is throttled
    pub.send(retainedQos0('c/1', ''));
    const disconnect = await pub.waitFor((p) => p.cmd === 'disconnect', 'DISCONNECT') as Extract<Packet, { cmd: 'disconnect' }>;
    assert.equal(disconnect.reasonCode, 0x89);
    store.catchUp();
    await broker.shutdown();
  });

  test('3.1.1: the publisher is closed', async () => {
    const { store, broker, pub } = await behindPublisher('pub4', 4);
    pub.send(retainedQos0('s/1', 'a'));
    pub.send(retainedQos0('s/2', 'b'));
    await pub.whenClosed();
    store.catchUp();
    await broker.shutdown();
  });
});
