// Malformed and forbidden input as raw bytes (MQTT 5 §4.13, §2, §1.5; 3.1.1 §4.8): each case
// ends only its own connection (5.0 after CONNECT: DISCONNECT 0x81 or a more specific code
// first), while clients connected the whole time keep working and the broker stays up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { Bystanders } from '../helpers/bystanders.ts';
import { uniqueId } from '../helpers/clients.ts';
import { hex } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { cases, type Case } from '../fixtures/malformed-cases.ts';

let broker: BrokerProcess;
let bystanders: Bystanders;

before(async () => {
  broker = await startBroker(['--max-packet-size', '65536']);
  bystanders = await Bystanders.connect(broker, 'tcp');
});

after(async () => {
  await bystanders?.close();
  await broker?.stop();
});

const assertOthersUnaffected = (): Promise<void> => bystanders.assertUnaffected();

async function open(c: Pick<Case, 'version' | 'connected'>): Promise<RawPeer> {
  return c.connected
    ? RawPeer.connected(broker, 'tcp', c.version, { clientId: uniqueId('bad'), protocolVersion: c.version })
    : RawPeer.open(broker, 'tcp', c.version);
}

describe('malformed input closes only the offending connection', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const bad = await open(c);
      const before = bad.log.packets.length;
      bad.send(hex(c.bytes));
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
      // Only the fixed header and a little of the body: the broker must not wait for the rest
      bad.send(Buffer.concat([hex(c.bytes), Buffer.from('0001', 'hex'), Buffer.alloc(1000, 0x61)]));
      const packets = await bad.log.whenClosed(3000);
      if (c.version === 5 && c.connected) {
        assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, 0x95, `got ${bad.log.describe()}`);
      }
      await assertOthersUnaffected();
    });
  }

  test('[MQTT-3.2.2-15] a packet at the limit is still accepted', async () => {
    const good = await RawPeer.connected(broker, 'tcp', 5, { clientId: uniqueId('big'), protocolVersion: 5 });
    // 65536 bytes in all: 1 + 3 (remaining length) + 65532
    const topic = 'big';
    const payloadLength = 65532 - 2 - topic.length - 2 - 1;
    const body = Buffer.concat([hex('0003'), Buffer.from(topic), hex('0001 00'), Buffer.alloc(payloadLength, 0x61)]);
    const header = hex('32 fc ff 03'); // 65532
    assert.equal(header.length + body.length, 65536);
    good.send(Buffer.concat([header, body]));
    const ack = await good.log.first('puback');
    assert.equal(ack.messageId, 1);
    assert.equal(good.log.closed, false);
    good.destroy();
  });
});
