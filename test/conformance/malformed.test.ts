// Malformed and forbidden input as raw bytes (MQTT 5 §4.13, §2, §1.5; 3.1.1 §4.8): each case
// ends only its own connection (5.0 after CONNECT: DISCONNECT 0x81 or a more specific code
// first), while clients connected the whole time keep working and the broker stays up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { close, collect, connect, uniqueId } from '../helpers/clients.ts';
import { hex } from '../helpers/raw.ts';
import { wireConnect, wireOpen, type Version, type WireClient } from '../helpers/wire.ts';

interface Case {
  name: string;
  version: Version;
  /** Send a CONNECT (and await CONNACK) before `bytes`. */
  connected: boolean;
  bytes: string;
  /**
   * 'close': the connection is closed, with no DISCONNECT from the broker.
   * A list of codes: the broker sends DISCONNECT with one of them, then closes.
   */
  expect: 'close' | number[];
}

const MALFORMED = 0x81;
const PROTOCOL_ERROR = 0x82;

// Hex tables: fixed header | variable header | payload. 5.0 PUBLISH/SUBSCRIBE carry a
// property length byte (00) after the packet id / topic.
const cases: Case[] = [
  // Reserved fixed-header flags [MQTT-2.1.3-1] / 3.1.1 [MQTT-2.2.2-2]
  { name: '[MQTT-3.8.1-1] SUBSCRIBE with fixed-header flags 0000', version: 5, connected: true, bytes: '80 07 0001 00 0001 61 01', expect: [MALFORMED] },
  { name: '[MQTT-3.8.1-1] SUBSCRIBE with fixed-header flags 0000 (3.1.1)', version: 4, connected: true, bytes: '80 06 0001 0001 61 01', expect: 'close' },
  { name: '[MQTT-3.10.1-1] UNSUBSCRIBE with fixed-header flags 0000', version: 5, connected: true, bytes: 'a0 06 0001 00 0001 61', expect: [MALFORMED] },
  { name: '[MQTT-3.6.1-1] PUBREL with fixed-header flags 0000', version: 5, connected: true, bytes: '60 02 0001', expect: [MALFORMED] },
  { name: '[MQTT-2.1.3-1] PINGREQ with fixed-header flags 0001', version: 4, connected: true, bytes: 'c1 00', expect: 'close' },
  // PUBLISH flags
  { name: '[MQTT-3.3.1-4] PUBLISH with QoS 3', version: 5, connected: true, bytes: '36 07 0001 61 0001 00 78', expect: [MALFORMED] },
  { name: '[MQTT-3.3.1-4] PUBLISH with QoS 3 (3.1.1)', version: 4, connected: true, bytes: '36 06 0001 61 0001 78', expect: 'close' },
  { name: '[MQTT-3.3.1-2] QoS 0 PUBLISH with DUP 1', version: 5, connected: true, bytes: '38 05 0001 61 00 78', expect: [MALFORMED, PROTOCOL_ERROR] },
  { name: '[MQTT-3.3.1-2] QoS 0 PUBLISH with DUP 1 (3.1.1)', version: 4, connected: true, bytes: '38 04 0001 61 78', expect: 'close' },
  { name: '[MQTT-2.2.1-3] QoS 1 PUBLISH with packet identifier 0', version: 5, connected: true, bytes: '32 07 0001 61 0000 00 78', expect: [MALFORMED, PROTOCOL_ERROR] },
  // Remaining length
  { name: '[MQTT-1.5.5-1] remaining length encoded in 5 bytes', version: 5, connected: true, bytes: '30 80 80 80 80 01', expect: [MALFORMED] },
  { name: '[MQTT-1.5.5-1] remaining length encoded in 5 bytes (3.1.1)', version: 4, connected: true, bytes: '30 80 80 80 80 01', expect: 'close' },
  { name: '[MQTT-4.13.1-1] PUBLISH whose topic length runs past the packet', version: 5, connected: true, bytes: '30 04 0005 61 62', expect: [MALFORMED] },
  { name: '[MQTT-4.13.1-1] PUBACK with remaining length 1', version: 5, connected: true, bytes: '40 01 00', expect: [MALFORMED] },
  { name: '[MQTT-4.13.1-1] PUBREL with remaining length 0 (3.1.1)', version: 4, connected: true, bytes: '62 00', expect: 'close' },
  { name: '[MQTT-4.13.1-1] PUBACK with remaining length 3 (3.1.1)', version: 4, connected: true, bytes: '40 03 0001 00', expect: 'close' },
  { name: '[MQTT-4.13.1-1] PINGREQ with remaining length 1', version: 5, connected: true, bytes: 'c0 01 00', expect: [MALFORMED] },
  { name: '[MQTT-4.13.1-1] DISCONNECT with remaining length 1 (3.1.1)', version: 4, connected: true, bytes: 'e0 01 00', expect: 'close' },
  { name: '[MQTT-2.2.2-1] 5.0 PUBLISH without a property length', version: 5, connected: true, bytes: '30 03 0001 61', expect: [MALFORMED] },
  // Topic names
  { name: '[MQTT-1.5.4-1] PUBLISH topic that is not well-formed UTF-8', version: 5, connected: true, bytes: '30 06 0002 c3 28 00 78', expect: [MALFORMED] },
  { name: '[MQTT-1.5.4-1] PUBLISH topic that is not well-formed UTF-8 (3.1.1)', version: 4, connected: true, bytes: '30 05 0002 c3 28 78', expect: 'close' },
  { name: '[MQTT-1.5.4-1] PUBLISH topic with a UTF-16 surrogate encoded in UTF-8', version: 5, connected: true, bytes: '30 07 0003 ed a0 80 00 78', expect: [MALFORMED] },
  { name: '[MQTT-1.5.4-2] PUBLISH topic containing U+0000', version: 5, connected: true, bytes: '30 06 0002 61 00 00 78', expect: [MALFORMED] },
  { name: '[MQTT-1.5.4-2] PUBLISH topic containing U+0000 (3.1.1)', version: 4, connected: true, bytes: '30 05 0002 61 00 78', expect: 'close' },
  { name: '[MQTT-3.3.2-2] PUBLISH topic containing +', version: 5, connected: true, bytes: '30 06 0002 61 2b 00 78', expect: [0x90, MALFORMED, PROTOCOL_ERROR] },
  { name: '[MQTT-3.3.2-2] PUBLISH topic containing # (3.1.1)', version: 4, connected: true, bytes: '30 05 0002 61 23 78', expect: 'close' },
  { name: '[MQTT-4.7.3-1] PUBLISH with an empty topic and no Topic Alias', version: 5, connected: true, bytes: '30 04 0000 00 78', expect: [0x90, MALFORMED, PROTOCOL_ERROR] },
  // Properties
  { name: '[MQTT-3.3.4-6] PUBLISH from a client carrying a Subscription Identifier', version: 5, connected: true, bytes: '30 07 0001 61 02 0b01 78', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-2.2.2-1] PUBLISH with an unknown property identifier', version: 5, connected: true, bytes: '30 07 0001 61 02 7f00 78', expect: [MALFORMED, PROTOCOL_ERROR] },
  { name: '[MQTT-2.2.2-2] PUBLISH with the Payload Format Indicator twice', version: 5, connected: true, bytes: '30 09 0001 61 04 0101 0101 78', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-2.2.2-2] PUBLISH whose property length runs past the packet', version: 5, connected: true, bytes: '30 05 0001 61 09 01', expect: [MALFORMED] },
  { name: '[MQTT-3.3.2-13] PUBLISH Response Topic containing a wildcard', version: 5, connected: true, bytes: '30 0a 0001 61 05 08 0002 612b 78', expect: [PROTOCOL_ERROR, 0x90, MALFORMED] },
  // Packet types a client must not send
  { name: '[MQTT-2.1.2] reserved packet type 0 (3.1.1)', version: 4, connected: true, bytes: '00 00', expect: 'close' },
  { name: '[MQTT-2.1.2] reserved packet type 0', version: 5, connected: true, bytes: '00 00', expect: [MALFORMED, PROTOCOL_ERROR] },
  { name: '[MQTT-2.1.2] packet type 15 (AUTH) from a 3.1.1 client', version: 4, connected: true, bytes: 'f0 00', expect: 'close' },
  { name: '[MQTT-3.2] CONNACK sent by a client', version: 5, connected: true, bytes: '20 03 00 00 00', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-3.2] CONNACK sent by a client (3.1.1)', version: 4, connected: true, bytes: '20 02 00 00', expect: 'close' },
  { name: '[MQTT-3.9] SUBACK sent by a client', version: 5, connected: true, bytes: '90 04 0001 00 00', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-3.13] PINGRESP sent by a client (3.1.1)', version: 4, connected: true, bytes: 'd0 00', expect: 'close' },
  // SUBSCRIBE / UNSUBSCRIBE payloads
  { name: '[MQTT-3.8.3-2] SUBSCRIBE with no topic filter', version: 5, connected: true, bytes: '82 03 0001 00', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-3.8.3-3] SUBSCRIBE with no topic filter (3.1.1)', version: 4, connected: true, bytes: '82 02 0001', expect: 'close' },
  { name: '[MQTT-2.2.1-3] SUBSCRIBE with packet identifier 0', version: 5, connected: true, bytes: '82 07 0000 00 0001 61 01', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-2.2.1-3] UNSUBSCRIBE with packet identifier 0 (3.1.1)', version: 4, connected: true, bytes: 'a2 05 0000 0001 61', expect: 'close' },
  { name: '[MQTT-3.8.3-5] SUBSCRIBE options with reserved bits set', version: 5, connected: true, bytes: '82 07 0001 00 0001 61 c1', expect: [MALFORMED, PROTOCOL_ERROR] },
  { name: '[MQTT-3.8.3-4] SUBSCRIBE requesting QoS 3 (3.1.1)', version: 4, connected: true, bytes: '82 06 0001 0001 61 03', expect: 'close' },
  { name: '[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filter', version: 5, connected: true, bytes: 'a2 03 0001 00', expect: [PROTOCOL_ERROR, MALFORMED] },
  { name: '[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filter (3.1.1)', version: 4, connected: true, bytes: 'a2 02 0001', expect: 'close' },
  // Before CONNECT
  { name: '[MQTT-3.1.0-1] a first packet that is not CONNECT', version: 4, connected: false, bytes: 'c0 00', expect: 'close' },
  { name: '[MQTT-3.1.0-1] a PUBLISH before CONNECT', version: 5, connected: false, bytes: '30 05 0001 61 00 78', expect: 'close' },
  { name: '[MQTT-3.1.0-2] a second CONNECT', version: 5, connected: true, bytes: '10 0d 0004 4d515454 05 02 0000 00 0000', expect: [PROTOCOL_ERROR] },
  { name: '[MQTT-3.1.0-2] a second CONNECT (3.1.1)', version: 4, connected: true, bytes: '10 0c 0004 4d515454 04 02 0000 0000', expect: 'close' },
];

let broker: BrokerProcess;
/** Clients connected for the whole file, one per version, each subscribed to its own topic. */
const bystanders: Array<{ client: MqttClient; topic: string }> = [];

before(async () => {
  broker = await startBroker(['--max-packet-size', '65536']);
  for (const version of [4, 5] as const) {
    const topic = `ok/${uniqueId()}`;
    const client = await connect(broker, 'tcp', version, { keepalive: 0 });
    await client.subscribeAsync(topic, { qos: 1 });
    bystanders.push({ client, topic });
  }
});

after(async () => {
  await close(...bystanders.map((b) => b.client));
  await broker?.stop();
});

/** The bystanders are still connected and exchange messages; the broker process is alive. */
async function assertOthersUnaffected(): Promise<void> {
  assert.equal(broker.proc.exitCode, null, 'broker process exited');
  assert.equal(broker.proc.signalCode, null, 'broker process was killed');
  for (const [i, b] of bystanders.entries()) {
    assert.equal(b.client.connected, true, 'a bystander lost its connection');
    const other = bystanders[(i + 1) % bystanders.length]!;
    const got = collect(b.client, 1, 3000);
    const payload = uniqueId('still-here');
    await other.client.publishAsync(b.topic, payload, { qos: 1 });
    assert.equal((await got)[0]!.payload.toString(), payload);
  }
}

async function open(c: Pick<Case, 'version' | 'connected'>): Promise<WireClient> {
  return c.connected
    ? wireConnect(broker.mqttPort, c.version, { clientId: uniqueId('bad'), protocolVersion: c.version })
    : wireOpen(broker.mqttPort, c.version);
}

describe('malformed input closes only the offending connection', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const bad = await open(c);
      const before = bad.log.packets.length;
      bad.sendBytes(hex(c.bytes));
      const packets = (await bad.log.whenClosed(3000)).slice(before);
      const disconnect = packets.find((p) => p.cmd === 'disconnect');
      if (c.expect === 'close') {
        assert.equal(disconnect, undefined, `unexpected DISCONNECT: ${bad.log.describe()}`);
      } else {
        assert.ok(disconnect, `expected DISCONNECT with one of ${c.expect.map((x) => `0x${x.toString(16)}`).join(', ')}; got ${bad.log.describe()}`);
        assert.ok(c.expect.includes(disconnect.reasonCode ?? 0), `DISCONNECT 0x${(disconnect.reasonCode ?? 0).toString(16)} is not one of ${c.expect.map((x) => `0x${x.toString(16)}`).join(', ')}`);
      }
      // Nothing but DISCONNECT is sent in answer to a bad packet
      assert.deepEqual(packets.filter((p) => p.cmd !== 'disconnect').map((p) => p.cmd), []);
      await assertOthersUnaffected();
    });
  }
});

describe('oversized packets are refused from the fixed header', () => {
  // 100 MiB: remaining length 104857600 = 80 80 80 32
  for (const c of [
    { name: '[MQTT-3.2.2-15] a PUBLISH announcing 100 MiB after CONNECT (5.0: DISCONNECT 0x95)', version: 5 as const, connected: true, bytes: '30 80 80 80 32' },
    { name: '[MQTT-3.2.2-15] a PUBLISH announcing 100 MiB after CONNECT (3.1.1)', version: 4 as const, connected: true, bytes: '30 80 80 80 32' },
    { name: '[MQTT-3.2.2-15] a CONNECT announcing 100 MiB', version: 4 as const, connected: false, bytes: '10 80 80 80 32' },
    { name: '[MQTT-3.2.2-15] a PUBLISH announcing 256 MiB - 1 (the largest remaining length)', version: 5 as const, connected: true, bytes: '30 ff ff ff 7f' },
  ]) {
    test(c.name, async () => {
      const bad = await open(c);
      const started = Date.now();
      // Only the fixed header and a little of the body: the broker must not wait for the rest
      bad.sendBytes(Buffer.concat([hex(c.bytes), Buffer.from('0001', 'hex'), Buffer.alloc(1000, 0x61)]));
      const packets = await bad.log.whenClosed(3000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 1500, `closed only after ${elapsed} ms`);
      if (c.version === 5 && c.connected) {
        assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, 0x95, `got ${bad.log.describe()}`);
      }
      await assertOthersUnaffected();
    });
  }

  test('[MQTT-3.2.2-15] a packet at the limit is still accepted', async () => {
    const good = await wireConnect(broker.mqttPort, 5, { clientId: uniqueId('big'), protocolVersion: 5 });
    // 65536 bytes in all: 1 + 3 (remaining length) + 65532
    const topic = 'big';
    const payloadLength = 65532 - 2 - topic.length - 2 - 1;
    const body = Buffer.concat([hex('0003'), Buffer.from(topic), hex('0001 00'), Buffer.alloc(payloadLength, 0x61)]);
    const header = hex('32 fc ff 03'); // 65532
    assert.equal(header.length + body.length, 65536);
    good.sendBytes(Buffer.concat([header, body]));
    const ack = await good.log.next('puback');
    assert.equal(ack.messageId, 1);
    assert.equal(good.log.closed, false);
    good.end();
  });
});
