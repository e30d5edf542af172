// The malformed and forbidden inputs of malformed.test.ts (TCP), sent over WebSocket (`ws://…/mqtt`,
// one binary frame each): each ends only its own connection, with the same answer as over TCP,
// while WebSocket clients connected the whole time keep working and the broker stays up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.ts';
import { Bystanders } from '../helpers/bystanders.ts';
import { uniqueId } from '../helpers/clients.ts';
import { connackCode, hex } from '../helpers/mqtt-wire.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { cases, type Case } from '../fixtures/malformed-cases.ts';

let broker: BrokerProcess;
let bystanders: Bystanders;

before(async () => {
  broker = await startBroker(['--max-packet-size', '65536']);
  bystanders = await Bystanders.connect(broker, 'ws');
});

after(async () => {
  await bystanders?.close();
  await broker?.stop();
});

const assertOthersUnaffected = (): Promise<void> => bystanders.assertUnaffected();

/** A raw WebSocket connection; with `connected`, after a CONNECT that got CONNACK 0. */
async function open(c: Pick<Case, 'version' | 'connected'>): Promise<RawPeer> {
  const raw = await RawPeer.open(broker, 'ws', c.version);
  if (c.connected) assert.equal(connackCode(await raw.connect({ clientId: uniqueId('bad') })), 0);
  return raw;
}

const describeCodes = (codes: number[]): string => codes.map((x) => `0x${x.toString(16)}`).join(', ');

describe('malformed input over WebSocket closes only the offending connection', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const bad = await open(c);
      bad.send(hex(c.bytes));
      const packets = await bad.closed(3000);
      const disconnect = packets.find((p) => p.cmd === 'disconnect');
      if (c.expect === 'close') {
        assert.equal(disconnect, undefined, `unexpected DISCONNECT: ${JSON.stringify(packets)}`);
      } else {
        assert.ok(disconnect, `expected DISCONNECT with one of ${describeCodes(c.expect)}; got ${JSON.stringify(packets)}`);
        assert.ok(c.expect.includes(disconnect.reasonCode ?? 0), `DISCONNECT 0x${(disconnect.reasonCode ?? 0).toString(16)} is not one of ${describeCodes(c.expect)}`);
      }
      // Nothing but DISCONNECT is sent in answer to a bad packet
      assert.deepEqual(packets.filter((p) => p.cmd !== 'disconnect').map((p) => p.cmd), []);
      await assertOthersUnaffected();
    });
  }
});

describe('oversized packets over WebSocket are refused from the fixed header', () => {
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
      const packets = await bad.closed(3000);
      if (c.version === 5 && c.connected) {
        assert.equal(packets.find((p) => p.cmd === 'disconnect')?.reasonCode, 0x95, `got ${JSON.stringify(packets)}`);
      }
      await assertOthersUnaffected();
    });
  }
});
