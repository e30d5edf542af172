// User Property order survives a restart [MQTT-3.3.2-17] [MQTT-3.3.2-18]: a message stored for an
// offline persistent session, and a retained message, reach their subscribers after the broker
// restarted with their user properties in the order a subscriber connected at publication got them
// (jsonb would sort the keys: shorter first, then bytewise). Keys include ones jsonb reorders
// ("b" before "a", "10" before "2") and a key given twice.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { uniqueId } from '../helpers/clients.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { connackCode } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

/** The user properties of a PUBLISH as the list of (key, value) pairs in wire order. */
function pairs(p: IPublishPacket): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(p.properties?.userProperties ?? {})) {
    for (const x of Array.isArray(v) ? v : [v]) out.push([k, x]);
  }
  return out;
}

describe('user property order across a restart', { concurrency: false }, () => {
  let db: TestDatabase | undefined;
  const brokers: BrokerProcess[] = [];
  const peers: RawPeer[] = [];
  after(async () => {
    for (const p of peers) p.destroy();
    for (const b of brokers) await b.kill();
    await db?.drop();
  });

  const open = async (broker: BrokerProcess, clientId: string, persistent: boolean): Promise<RawPeer> => {
    const peer = await RawPeer.open(broker, 'tcp', 5);
    peers.push(peer);
    peer.on((p) => { if (p.cmd === 'publish' && p.qos === 1) peer.sendPacket({ cmd: 'puback', messageId: p.messageId ?? 0, reasonCode: 0 }); });
    const connack = await peer.connect({ clientId, clean: !persistent, ...(persistent ? { properties: { sessionExpiryInterval: 3600 } } : {}) });
    assert.equal(connackCode(connack), 0);
    return peer;
  };
  const subscribe = async (peer: RawPeer, topic: string): Promise<void> => {
    const suback = peer.waitFor((p) => p.cmd === 'suback', 'SUBACK');
    peer.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await suback;
  };
  const nextPublish = (peer: RawPeer, what: string): Promise<IPublishPacket> =>
    peer.waitFor((p) => p.cmd === 'publish', what, 10_000) as Promise<IPublishPacket>;

  test('a queued and a retained message keep their user property order', async () => {
    db = await createTestDatabase();
    const topic = `props/${uniqueId('t')}`;
    const offlineId = uniqueId('props-offline');
    const a = await startBroker(['--database-url', db.url]);
    brokers.push(a);
    const offline = await open(a, offlineId, true);
    await subscribe(offline, topic);
    offline.sendPacket({ cmd: 'disconnect', reasonCode: 0 });
    await offline.closed();
    const live = await open(a, uniqueId('props-live'), false);
    await subscribe(live, topic);
    const pub = await open(a, uniqueId('props-pub'), false);
    const userProperties = { b: 'first', a: 'second', 10: 'third', 2: 'fourth', rep: ['fifth', 'sixth'], z: 'seventh' };
    const liveGot = nextPublish(live, 'the live copy');
    const ack = pub.waitFor((p) => p.cmd === 'puback', 'PUBACK');
    pub.sendPacket({ cmd: 'publish', topic, payload: Buffer.from('m'), qos: 1, retain: true, dup: false, messageId: 7, properties: { userProperties } });
    assert.equal(((await ack) as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0, 0);
    const want = pairs(await liveGot);
    assert.equal(want.length, 7, JSON.stringify(want));
    assert.deepEqual(want.filter(([k]) => !/^\d+$/.test(k)), [['b', 'first'], ['a', 'second'], ['rep', 'fifth'], ['rep', 'sixth'], ['z', 'seventh']],
      'the live copy keeps the order sent for non-numeric keys');
    for (const p of [live, pub]) p.destroy();
    assert.equal(await a.stop(), 0);

    const b = await startBroker(['--database-url', db.url]);
    brokers.push(b);
    const resumed = await RawPeer.open(b, 'tcp', 5);
    peers.push(resumed);
    const queued = nextPublish(resumed, 'the queued copy');
    assert.equal(connackCode(await resumed.connect({ clientId: offlineId, clean: false, properties: { sessionExpiryInterval: 3600 } })), 0);
    const queuedCopy = await queued;
    assert.deepEqual(pairs(queuedCopy), want, 'queued message: user properties in the order a live subscriber got them');

    const late = await open(b, uniqueId('props-late'), false);
    const retained = nextPublish(late, 'the retained copy');
    await subscribe(late, topic);
    assert.deepEqual(pairs(await retained), want, 'retained message: user properties in the order a live subscriber got them');
  });
});
