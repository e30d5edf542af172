// Malformed input that once reached the broker's internals as an exception (a property decoded
// as null, a packet id of -1 echoed into an acknowledgement) or reached PostgreSQL as a value it
// refuses (U+0000 in a jsonb column). Each is sent as exact bytes and must be refused at
// decode/validation with the right reason code: no error is logged, nothing fails to store, and
// a bystander keeps being served.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';
import { hex } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

const MALFORMED = 0x81;

let broker: BrokerProcess;
let bystander: MqttClient;
const topic = `ok/${uniqueId()}`;

before(async () => {
  broker = await startBroker();
  bystander = await connect(broker, 'tcp', 5);
  await bystander.subscribeAsync(topic, { qos: 1 });
});
after(async () => {
  await close(bystander);
  await broker?.stop();
});

/** Log lines that show an internal failure: errors, and store refusals logged as warnings. */
function internalFailures(from: number): Array<Record<string, unknown>> {
  return broker.logs.slice(from).filter((l) => Number(l['level']) >= 50 || /could not (write|store)/.test(String(l['msg'])));
}

async function assertClean(from: number): Promise<void> {
  // the bystander's round trip goes through the store's writer after the bad input's audit rows
  const got = collect(bystander, 1, 5000);
  const other = await connect(broker, 'tcp', 5);
  await other.publishAsync(topic, 'still here', { qos: 1 });
  assert.equal((await got)[0]!.payload.toString(), 'still here');
  await close(other);
  // the refusal's audit row is committed by now: a connect that follows it in the writer came back
  assert.deepEqual(internalFailures(from), []);
  assert.equal(broker.proc.exitCode, null);
}

describe('malformed input is refused at decode, not met as an exception', () => {
  test('3.1.1 QoS 1 PUBLISH whose packet id is cut to one byte: closed, no PUBACK for id -1', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.connected(broker, 'tcp', 4, { clientId: uniqueId('bad'), protocolVersion: 4 });
    c.send(hex('32 04 0001 61 00'));
    const packets = await c.log.whenClosed(5000);
    assert.deepEqual(packets.map((p) => p.cmd), ['connack']);
    await assertClean(from);
  });

  test('5.0 PUBLISH whose Content Type runs past the packet (decoded as null): DISCONNECT 0x81', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('bad'), protocolVersion: 5 });
    c.send(hex('30 07 0001 61 03 03 0010'));
    const packets = await c.log.whenClosed(5000);
    assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, MALFORMED, c.log.describe());
    await assertClean(from);
  });

  test('5.0 QoS 1 PUBLISH whose User Property value runs past the packet: DISCONNECT 0x81', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('bad'), protocolVersion: 5 });
    c.send(hex('32 0c 0001 61 0001 06 26 0001 6b 0010'));
    const packets = await c.log.whenClosed(5000);
    assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, MALFORMED, c.log.describe());
    assert.deepEqual(packets.filter((p) => p.cmd === 'puback'), []);
    await assertClean(from);
  });

  test('5.0 DISCONNECT whose Session Expiry Interval is cut short (decoded as -1) is malformed', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('bad'), protocolVersion: 5, properties: { sessionExpiryInterval: 60 } });
    // reason 0x00, property length 3: Session Expiry Interval (0x11) with 2 of its 4 bytes
    c.send(hex('e0 05 00 03 11 0000'));
    const packets = await c.log.whenClosed(5000);
    assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, MALFORMED, c.log.describe());
    await assertClean(from);
  });

  test('5.0 CONNECT with U+0000 in its Authentication Method: closed (at most CONNACK 0x81), nothing refused by the store', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.open(broker, 'tcp', 5);
    const bytes = mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: uniqueId('bad'),
      properties: { authenticationMethod: 'a\u0000b' },
    }, { protocolVersion: 5 });
    c.send(bytes);
    const packets = await c.log.whenClosed(5000);
    // [MQTT-4.13.1-1] closed, with at most a CONNACK 0x81 first
    assert.deepEqual(packets.filter((p) => p.cmd !== 'connack' || p.reasonCode !== MALFORMED).map((p) => p.cmd), [], c.log.describe());
    await assertClean(from);
  });

  test('5.0 CONNECT with U+0000 in a will User Property name: closed (at most CONNACK 0x81)', async () => {
    const from = broker.logs.length;
    const c = await RawPeer.open(broker, 'tcp', 5);
    c.send(mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: uniqueId('bad'),
      will: { topic: 'w', payload: Buffer.from('x'), qos: 1, retain: false, properties: { userProperties: { 'k\u0000': 'v' } } },
    }, { protocolVersion: 5 }));
    const packets = await c.log.whenClosed(5000);
    assert.deepEqual(packets.filter((p) => p.cmd !== 'connack' || p.reasonCode !== MALFORMED).map((p) => p.cmd), [], c.log.describe());
    await assertClean(from);
  });
});
