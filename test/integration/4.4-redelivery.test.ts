// Message delivery retry (MQTT 5 §4.4, §4.3.2, §4.3.3) over [tcp, ws] × [3.1.1, 5.0]: a raw
// subscriber that withholds acknowledgements, drops the connection and resumes its session gets the
// unacknowledged PUBLISH again with DUP set, or the PUBREL again, with the original packet ids.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket, IPublishPacket, IPubrelPacket, ISubackPacket, Packet } from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, expectNoMessage, matrix, uniqueId, type Transport, type Version } from '../helpers/clients.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

let broker: BrokerProcess;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

/** Connect a raw client to a persistent session (clean session 0 / Session Expiry Interval 60). */
async function resume(transport: Transport, version: Version, clientId: string, expectPresent: boolean): Promise<RawPeer> {
  const c = await RawPeer.open(broker, transport, version);
  c.sendPacket({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: false, keepalive: 0,
    properties: version === 5 ? { sessionExpiryInterval: 60 } : undefined,
  });
  const connack = (await c.next()) as IConnackPacket;
  assert.equal(connack.cmd, 'connack');
  assert.equal(connack.reasonCode ?? connack.returnCode, 0);
  assert.equal(connack.sessionPresent, expectPresent, `Session Present ${expectPresent ? 1 : 0}`);
  return c;
}

async function subscribe(c: RawPeer, topic: string, qos: 1 | 2): Promise<void> {
  c.sendPacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] });
  const suback = (await c.next()) as ISubackPacket;
  assert.equal(suback.cmd, 'suback');
  assert.deepEqual(suback.granted, [qos]);
}

async function nextOf<T extends Packet>(c: RawPeer, cmd: T['cmd']): Promise<T> {
  const p = await c.next();
  assert.equal(p.cmd, cmd, `expected ${cmd}, got ${p.cmd}`);
  return p as T;
}

/** Assert nothing arrives for a short while (nothing observable is expected). */
async function expectSilence(c: RawPeer, ms = 300): Promise<void> {
  await assert.rejects(c.next(ms), /timed out/);
}

/** Drop the connection and wait until it is gone on our side (a network failure for the broker). */
async function drop(c: RawPeer): Promise<void> {
  c.destroy();
  await c.closed();
}

/** DISCONNECT normally and wait for the broker to close: once closed, the broker has detached the session. */
async function leave(c: RawPeer): Promise<void> {
  c.send('e0 00');
  assert.deepEqual(await c.closed(), []);
}

/** End the session: clean start, then DISCONNECT. */
async function discard(transport: Transport, version: Version, clientId: string): Promise<void> {
  const c = await connect(broker, transport, version, { clientId, clean: true });
  await c.endAsync();
}

describe('redelivery', { concurrency: true }, () => {
  for (const { transport, version, name } of matrix) {
    describe(`redelivery on resume (${name})`, () => {
      test('[MQTT-4.4.0-1] [MQTT-3.3.1-1] an unacknowledged QoS 1 PUBLISH is resent with DUP 1 and its packet id', async () => {
        const id = uniqueId('redeliver');
        const topic = `r/${uniqueId()}`;
        const sub = await resume(transport, version, id, false);
        await subscribe(sub, topic, 1);
        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'q1', { qos: 1 });
        const first = await nextOf<IPublishPacket>(sub, 'publish');
        assert.equal(first.qos, 1);
        assert.equal(first.dup, false);
        await drop(sub); // no PUBACK

        const again = await resume(transport, version, id, true);
        const resent = await nextOf<IPublishPacket>(again, 'publish');
        assert.equal(resent.dup, true);
        assert.equal(resent.qos, 1);
        assert.equal(resent.messageId, first.messageId);
        assert.equal(resent.topic, topic);
        assert.equal(resent.payload.toString(), 'q1');
        again.sendPacket({ cmd: 'puback', messageId: resent.messageId });
        await expectSilence(again);
        await drop(again);

        // [MQTT-4.4.0-1] once acknowledged, it is not sent again
        const third = await resume(transport, version, id, true);
        await expectSilence(third);
        await drop(third);
        await close(pub);
        await discard(transport, version, id);
      });

      test('[MQTT-4.4.0-1] unacknowledged PUBLISHes are resent in their order, before messages queued while offline', async () => {
        const id = uniqueId('redeliver');
        const topic = `r/${uniqueId()}`;
        const sub = await resume(transport, version, id, false);
        await subscribe(sub, topic, 1);
        const pub = await connect(broker, transport, version);
        for (const m of ['a', 'b', 'c']) await pub.publishAsync(topic, m, { qos: 1 });
        const sent: IPublishPacket[] = [];
        for (let i = 0; i < 3; i++) sent.push(await nextOf<IPublishPacket>(sub, 'publish'));
        sub.sendPacket({ cmd: 'puback', messageId: sent[1]!.messageId }); // only b is acknowledged
        await leave(sub); // a and c stay unacknowledged
        await pub.publishAsync(topic, 'd', { qos: 1 }); // queued: the session has no connection now

        const again = await resume(transport, version, id, true);
        const got: IPublishPacket[] = [];
        for (let i = 0; i < 3; i++) got.push(await nextOf<IPublishPacket>(again, 'publish'));
        assert.deepEqual(got.map((p) => p.payload.toString()), ['a', 'c', 'd']);
        assert.deepEqual(got.map((p) => p.dup), [true, true, false]);
        assert.deepEqual(got.slice(0, 2).map((p) => p.messageId), [sent[0]!.messageId, sent[2]!.messageId]);
        for (const p of got) again.sendPacket({ cmd: 'puback', messageId: p.messageId });
        await expectSilence(again);
        await drop(again);
        await close(pub);
        await discard(transport, version, id);
      });

      test('[MQTT-4.4.0-1] [MQTT-3.3.1-1] a QoS 2 PUBLISH without PUBREC is resent with DUP 1 and its packet id', async () => {
        const id = uniqueId('redeliver');
        const topic = `r/${uniqueId()}`;
        const sub = await resume(transport, version, id, false);
        await subscribe(sub, topic, 2);
        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'q2', { qos: 2 });
        const first = await nextOf<IPublishPacket>(sub, 'publish');
        assert.equal(first.qos, 2);
        assert.equal(first.dup, false);
        await drop(sub); // no PUBREC

        const again = await resume(transport, version, id, true);
        const resent = await nextOf<IPublishPacket>(again, 'publish');
        assert.equal(resent.dup, true);
        assert.equal(resent.qos, 2);
        assert.equal(resent.messageId, first.messageId);
        assert.equal(resent.payload.toString(), 'q2');
        // The flow then completes normally
        again.sendPacket({ cmd: 'pubrec', messageId: resent.messageId });
        const pubrel = await nextOf<IPubrelPacket>(again, 'pubrel');
        assert.equal(pubrel.messageId, first.messageId);
        again.sendPacket({ cmd: 'pubcomp', messageId: resent.messageId });
        await expectSilence(again);
        await drop(again);

        const third = await resume(transport, version, id, true);
        await expectSilence(third);
        await drop(third);
        await close(pub);
        await discard(transport, version, id);
      });

      test('[MQTT-4.4.0-1] after PUBREC, the PUBREL is resent on resume (and the PUBLISH is not)', async () => {
        const id = uniqueId('redeliver');
        const topic = `r/${uniqueId()}`;
        const sub = await resume(transport, version, id, false);
        await subscribe(sub, topic, 2);
        const pub = await connect(broker, transport, version);
        await pub.publishAsync(topic, 'q2', { qos: 2 });
        const first = await nextOf<IPublishPacket>(sub, 'publish');
        sub.sendPacket({ cmd: 'pubrec', messageId: first.messageId });
        assert.equal((await nextOf<IPubrelPacket>(sub, 'pubrel')).messageId, first.messageId);
        await drop(sub); // no PUBCOMP

        const again = await resume(transport, version, id, true);
        const pubrel = await nextOf<IPubrelPacket>(again, 'pubrel');
        assert.equal(pubrel.messageId, first.messageId);
        again.sendPacket({ cmd: 'pubcomp', messageId: first.messageId });
        await expectSilence(again);
        await drop(again);

        const third = await resume(transport, version, id, true);
        await expectSilence(third);
        await drop(third);
        await close(pub);
        await discard(transport, version, id);
      });

      test('[MQTT-4.3.3-10] an inbound QoS 2 PUBLISH resent after a reconnect is not delivered twice; its PUBREL completes it', async () => {
        const id = uniqueId('redeliver');
        const topic = `r/${uniqueId()}`;
        const watcher = await connect(broker, transport, version);
        await watcher.subscribeAsync(topic, { qos: 2 });
        const once = collect(watcher, 1);

        const publisher = await resume(transport, version, id, false);
        const publish = { cmd: 'publish', topic, payload: Buffer.from('exactly-once'), qos: 2, messageId: 7, retain: false, dup: false } as const;
        publisher.sendPacket(publish);
        assert.equal((await nextOf(publisher, 'pubrec')).messageId, 7);
        assert.equal((await once)[0]!.payload.toString(), 'exactly-once');
        await drop(publisher); // no PUBREL

        const again = await resume(transport, version, id, true);
        const nothing = expectNoMessage(watcher, 500);
        again.sendPacket({ ...publish, dup: true }); // [MQTT-4.4.0-1] the client resends it with DUP 1
        assert.equal((await nextOf(again, 'pubrec')).messageId, 7);
        again.sendPacket({ cmd: 'pubrel', messageId: 7 });
        const pubcomp = await nextOf(again, 'pubcomp');
        assert.equal(pubcomp.messageId, 7);
        if (version === 5) assert.equal((pubcomp as { reasonCode?: number }).reasonCode ?? 0, 0, 'the broker still knew the packet id');
        assert.equal(await nothing, true, 'the resent PUBLISH was not routed again');
        await drop(again);
        await close(watcher);
        await discard(transport, version, id);
      });
    });
  }
});
