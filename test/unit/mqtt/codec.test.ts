// Codec: decoding inbound packets, encoding outbound ones, PUBLISH patching and stream framing.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import type { Packet as WirePacket } from 'mqtt-packet';
import {
  encodePacket, encodePublish, PacketReader, patchPublish, publishPacketIdOffset, type ReadResult,
} from '../../../src/mqtt/codec.ts';
import { MqttError } from '../../../src/mqtt/errors.ts';
import type { InboundPacket, ProtocolVersion, PublishPacket } from '../../../src/mqtt/packet.ts';
import { ReasonCode } from '../../../src/mqtt/reason-code.ts';
import { connectBytes, decodeFixtures, encodeFixtures, hex, sharedFixtures } from './codec-fixtures.ts';

const MAX = 1 << 20;

/**
 * Plain-data copy for deep equality: drops keys whose value is undefined and turns
 * null-prototype objects (mqtt-packet's user properties) into plain ones. Buffers stay Buffers.
 */
function plain(x: unknown): unknown {
  if (Buffer.isBuffer(x)) return x;
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) if (v !== undefined) out[k] = plain(v);
    return out;
  }
  return x;
}

/** Push `chunks` into `reader` and return every result. */
function feed(reader: PacketReader, ...chunks: Buffer[]): ReadResult[] {
  const out: ReadResult[] = [];
  for (const c of chunks) reader.push(c, (r) => { out.push(r); });
  return out;
}

/** A reader that has already decoded a CONNECT of `version` (the parser learns the version from it). */
function connectedReader(version: ProtocolVersion, max = MAX): PacketReader {
  const reader = new PacketReader(max);
  const [r] = feed(reader, hex(connectBytes[version]));
  assert.equal(r?.kind, 'packet');
  return reader;
}

function decodeOne(version: ProtocolVersion, bytes: Buffer, isConnect: boolean): InboundPacket {
  const reader = isConnect ? new PacketReader(MAX) : connectedReader(version);
  const results = feed(reader, bytes);
  assert.equal(results.length, 1);
  const r = results[0]!;
  assert.equal(r.kind, 'packet');
  return r.packet;
}

/** Parse bytes with mqtt-packet's own parser, as a client library would; fails unless exactly one packet. */
function parseWithMqttPacket(bytes: Buffer, version: ProtocolVersion): WirePacket {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const packets: WirePacket[] = [];
  const errors: Error[] = [];
  parser.on('packet', (p: WirePacket) => packets.push(p));
  parser.on('error', (e: Error) => errors.push(e));
  const left = parser.parse(bytes);
  assert.deepEqual(errors, []);
  assert.equal(packets.length, 1);
  assert.equal(left, 0, 'every byte consumed');
  return packets[0]!;
}

function isMqttError(rc: ReasonCode): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof MqttError, `expected MqttError, got ${String(e)}`);
    assert.equal(e.reasonCode, rc, `reason code 0x${e.reasonCode.toString(16)}: ${e.message}`);
    return true;
  };
}

describe('decode (PacketReader) fixtures', () => {
  for (const f of decodeFixtures) {
    test(`${f.name} (v${f.version})`, () => {
      const packet = decodeOne(f.version, hex(f.bytes), f.packet.type === 'connect');
      assert.deepEqual(plain(packet), plain(f.packet));
    });
  }
});

describe('encodePacket fixtures', () => {
  for (const f of encodeFixtures) {
    test(`${f.name} (v${f.version})`, () => {
      const bytes = encodePacket(f.packet, f.version);
      assert.equal(bytes.toString('hex'), hex(f.bytes).toString('hex'));
      // mqtt-packet (what MQTT.js uses) reads it back as the same packet type
      const wire = parseWithMqttPacket(bytes, f.version);
      assert.equal(wire.cmd, f.packet.type);
      if ('packetId' in f.packet && f.packet.packetId !== undefined) {
        assert.equal((wire as { messageId?: number }).messageId, f.packet.packetId);
      }
    });
  }
});

describe('encodePublish', () => {
  const publishes = sharedFixtures.filter((f): f is typeof f & { packet: PublishPacket } => f.packet.type === 'publish');
  for (const f of publishes) {
    test(`${f.name} (v${f.version}) encodes to the fixture bytes`, () => {
      const p = f.packet;
      const bytes = encodePublish(p.topicName, p.payload, p.qos, p.retain, p.dup, p.packetId ?? 0, p.properties, f.version === 5);
      assert.equal(bytes.toString('hex'), hex(f.bytes).toString('hex'));
    });
  }

  test('a 5.0 PUBLISH without properties still carries a zero property length', () => {
    const bytes = encodePublish('a', Buffer.from('x'), 0, false, false, 0, undefined, true);
    assert.equal(bytes.toString('hex'), '300500016100' + '78');
  });

  test('a multi-byte remaining length round-trips through mqtt-packet', () => {
    const payload = Buffer.alloc(20_000, 0xab);
    const bytes = encodePublish('big/topic', payload, 1, true, false, 9, { userProperties: { a: 'ä' } });
    const wire = parseWithMqttPacket(bytes, 5);
    assert.equal(wire.cmd, 'publish');
    if (wire.cmd !== 'publish') return;
    assert.equal(wire.topic, 'big/topic');
    assert.equal(wire.messageId, 9);
    assert.equal(wire.retain, true);
    assert.deepEqual(Buffer.from(wire.payload as Buffer), payload);
    assert.deepEqual(plain(wire.properties), { userProperties: { a: 'ä' } });
  });

  test('subscription identifiers (one or many) are encoded as variable byte integers', () => {
    const bytes = encodePublish('t', Buffer.alloc(0), 0, false, false, 0, { subscriptionIdentifier: [1, 200, 300_000] });
    const wire = parseWithMqttPacket(bytes, 5);
    assert.equal(wire.cmd, 'publish');
    assert.deepEqual(plain(wire.properties), { subscriptionIdentifier: [1, 200, 300_000] });
  });
});

describe('patchPublish', () => {
  for (const version of [4, 5] as const) {
    test(`v${version}: packet id and DUP are patched in a copy; the template is untouched`, () => {
      const props = version === 5 ? { contentType: 'text/plain', userProperties: { k: 'v' } } : undefined;
      const template = encodePublish('a/b', Buffer.from('payload'), 1, false, false, 0, props, version === 5);
      const original = Buffer.from(template);

      const copy = Buffer.from(template);
      patchPublish(copy, 0xbeef, true);
      assert.deepEqual(template, original, 'template unchanged');
      const p = decodeOne(version, copy, false);
      assert.equal(p.type, 'publish');
      if (p.type !== 'publish') return;
      assert.equal(p.packetId, 0xbeef);
      assert.equal(p.dup, true);
      assert.equal(p.qos, 1);
      assert.equal(p.topicName, 'a/b');
      assert.equal(p.payload.toString(), 'payload');
      if (version === 5) assert.deepEqual(plain(p.properties), props);

      const second = Buffer.from(template);
      patchPublish(second, 1, false);
      const q = decodeOne(version, second, false);
      assert.equal(q.type === 'publish' && q.packetId, 1);
      assert.equal(q.type === 'publish' && q.dup, false);
    });
  }

  test('clears DUP and keeps QoS and RETAIN bits', () => {
    const b = encodePublish('t', Buffer.from('x'), 2, true, true, 7, undefined);
    patchPublish(b, 8, false);
    assert.equal(b[0], 0x35); // PUBLISH, QoS 2, RETAIN, no DUP
    patchPublish(b, 8, true);
    assert.equal(b[0], 0x3d);
  });

  test('finds the packet id after a multi-byte remaining length', () => {
    const b = encodePublish('topic', Buffer.alloc(300), 1, false, false, 0, undefined);
    assert.equal(publishPacketIdOffset(b), 1 + 2 + 2 + 5);
    patchPublish(b, 513, false);
    assert.equal(b.readUInt16BE(10), 513);
  });
});

describe('PacketReader framing', () => {
  test('a small payload read from a large chunk is copied, so a queued message does not pin the chunk', () => {
    const reader = new PacketReader(MAX);
    feed(reader, hex(connectBytes[4]));
    const publish = encodePublish('t', Buffer.from('hi'), 0, false, false, 0, undefined, false);
    // many packets in one 64 KiB read, as a TCP socket delivers them
    const chunk = Buffer.concat(Array.from({ length: 64 * 1024 / publish.length }, () => publish));
    const results = feed(reader, chunk);
    const first = results[0]!;
    assert.ok(first.kind === 'packet' && first.packet.type === 'publish');
    assert.equal(first.packet.payload.toString(), 'hi');
    assert.notEqual(first.packet.payload.buffer, chunk.buffer, 'payload does not share the chunk\'s memory');
    assert.ok(first.packet.payload.buffer.byteLength < chunk.buffer.byteLength);
  });

  test('a payload that is most of its chunk is not copied', () => {
    const reader = new PacketReader(MAX);
    feed(reader, hex(connectBytes[4]));
    const chunk = encodePublish('t', Buffer.alloc(20_000, 7), 1, false, false, 9, undefined, false);
    const [r] = feed(reader, chunk);
    assert.ok(r!.kind === 'packet' && r!.packet.type === 'publish');
    assert.equal(r!.packet.payload.length, 20_000);
    assert.equal(r!.packet.payload.buffer, chunk.buffer);
  });

  test('one packet split into 1-byte chunks', () => {
    const reader = new PacketReader(MAX);
    const bytes = Buffer.concat([hex(connectBytes[5]), hex(sharedFixtures.find((f) => f.name.includes('QoS 1 with properties'))!.bytes)]);
    const results: ReadResult[] = [];
    for (let i = 0; i < bytes.length; i++) {
      reader.push(bytes.subarray(i, i + 1), (r) => { results.push(r); });
      if (i < 16) assert.equal(results.length, 0, `nothing before the CONNECT is complete (byte ${i})`);
    }
    assert.deepEqual(results.map((r) => r.kind === 'packet' && r.packet.type), ['connect', 'publish']);
    const pub = results[1]!;
    assert.ok(pub.kind === 'packet' && pub.packet.type === 'publish');
    assert.equal(pub.packet.properties?.topicAlias, 3);
    assert.equal(reader.protocolVersion, 5);
  });

  test('several packets in one chunk, the last one split', () => {
    const reader = new PacketReader(MAX);
    const publish = hex('30 07 0003 612f62 6869');
    const all = Buffer.concat([hex(connectBytes[4]), publish, hex('c0 00'), hex('40 02 0005'), publish]);
    const cut = all.length - 3;
    const first = feed(reader, all.subarray(0, cut));
    assert.deepEqual(first.map((r) => r.kind === 'packet' && r.packet.type), ['connect', 'publish', 'pingreq', 'puback']);
    const rest = feed(reader, all.subarray(cut));
    assert.deepEqual(rest.map((r) => r.kind === 'packet' && r.packet.type), ['publish']);
  });

  test('onResult returning false stops; the rest is delivered with the next push', () => {
    const reader = new PacketReader(MAX);
    const results: string[] = [];
    const two = Buffer.concat([hex(connectBytes[4]), hex('c0 00'), hex('c0 00')]);
    reader.push(two, (r) => { results.push(r.kind === 'packet' ? r.packet.type : r.kind); return false; });
    assert.deepEqual(results, ['connect']);
    reader.push(hex('c0 00'), (r) => { results.push(r.kind === 'packet' ? r.packet.type : r.kind); });
    assert.deepEqual(results, ['connect', 'pingreq', 'pingreq', 'pingreq']);
  });

  test('protocolVersion is undefined before CONNECT and learned from it', () => {
    const reader = new PacketReader(MAX);
    assert.equal(reader.protocolVersion, undefined);
    feed(reader, hex(connectBytes[4]));
    assert.equal(reader.protocolVersion, 4);
  });

  test('Maximum Packet Size is enforced from the fixed header, before the body arrives', () => {
    const reader = new PacketReader(1024);
    // PUBLISH with a remaining length of 100 MB (0x32 * 128^3): only the 5 header bytes are pushed
    assert.throws(() => reader.push(hex('30 80 80 80 32'), () => assert.fail('no packet expected')), isMqttError(ReasonCode.PacketTooLarge));
  });

  test('the size limit counts the whole packet: exactly the limit passes, one more byte fails', () => {
    const packet = encodePublish('t', Buffer.alloc(20), 0, false, false, 0, undefined);
    const atLimit = connectedReader(4, packet.length);
    assert.equal(feed(atLimit, packet).length, 1);
    const under = connectedReader(4, packet.length - 1);
    assert.throws(() => feed(under, packet.subarray(0, 2)), isMqttError(ReasonCode.PacketTooLarge));
  });

  test('a remaining length of five bytes is a Malformed Packet (§1.5.5: at most four)', () => {
    const reader = new PacketReader(MAX);
    // four continuation bytes are still an incomplete header
    assert.deepEqual(feed(reader, hex('30 ff ff ff')), []);
    assert.throws(() => feed(reader, hex('ff 7f')), isMqttError(ReasonCode.MalformedPacket));
  });

  test('[MQTT-3.1.2-2] an unsupported protocol level is reported, not thrown', () => {
    for (const [bytes, level] of [
      ['10 0d 0004 4d515454 06 02 003c 0001 63', 6], // MQTT level 6
      ['10 0d 0004 4d515454 03 02 003c 0001 63', 3], // MQTT level 3
      ['10 0f 0006 4d5149736470 03 02 0000 0001 63', 3], // MQIsdp 3.1
    ] as const) {
      const results = feed(new PacketReader(MAX), hex(bytes));
      assert.deepEqual(results, [{ kind: 'unsupported-protocol', protocolVersion: level }]);
    }
  });

  test('[MQTT-1.5.4-1] a PUBLISH topic name that is not well-formed UTF-8 is a Malformed Packet', () => {
    assert.throws(() => feed(connectedReader(4), hex('30 05 0001 ff 6869')), isMqttError(ReasonCode.MalformedPacket));
    // an encoded surrogate (U+D800) is not well-formed either
    assert.throws(() => feed(connectedReader(5), hex('30 08 0003 eda080 00 6869')), isMqttError(ReasonCode.MalformedPacket));
  });

  test('[MQTT-1.5.4-2] a PUBLISH topic name containing U+0000 is a Malformed Packet', () => {
    assert.throws(() => feed(connectedReader(4), hex('30 06 0002 6100 6869')), isMqttError(ReasonCode.MalformedPacket));
  });

  test('[MQTT-3.3.1-4] PUBLISH with QoS 3 is a Malformed Packet', () => {
    assert.throws(() => feed(connectedReader(4), hex('36 05 0001 61 0001 78')), isMqttError(ReasonCode.MalformedPacket));
  });

  test('[MQTT-3.1.2-3] CONNECT with the reserved flag set is a Malformed Packet', () => {
    assert.throws(() => feed(new PacketReader(MAX), hex('10 0e 0004 4d515454 04 03 003c 0002 6331')), isMqttError(ReasonCode.MalformedPacket));
  });

  test('[MQTT-2.1.3-1] reserved fixed-header flags must be as specified', () => {
    assert.throws(() => feed(connectedReader(4), hex('60 02 0006')), isMqttError(ReasonCode.MalformedPacket)); // PUBREL
    assert.throws(() => feed(connectedReader(4), hex('80 08 0009 0003 612f2b 01')), isMqttError(ReasonCode.MalformedPacket)); // SUBSCRIBE
  });

  test('a server-to-client packet type from a client is a Protocol Error', () => {
    assert.throws(() => feed(connectedReader(4), hex('20 02 00 00')), isMqttError(ReasonCode.ProtocolError)); // CONNACK
    assert.throws(() => feed(connectedReader(4), hex('90 03 0001 00')), isMqttError(ReasonCode.ProtocolError)); // SUBACK
  });
});

describe('shared parsers', () => {
  test('a malformed packet on one connection leaves no state behind for the others', () => {
    const good = new PacketReader(MAX);
    const bad = new PacketReader(MAX);
    feed(good, hex(connectBytes[4]));
    assert.throws(() => feed(bad, hex('10 0e 0004 4d515454 04 03 003c 0002 6331')), isMqttError(ReasonCode.MalformedPacket));
    const [r] = feed(good, hex('30 05 0001 61 6869'));
    assert.equal(r?.kind, 'packet');
    assert.deepEqual(r?.kind === 'packet' && r.packet.type === 'publish' ? [r.packet.topicName, r.packet.payload.toString()] : [], ['a', 'hi']);
    const [c] = feed(new PacketReader(MAX), hex(connectBytes[5]));
    assert.equal(c?.kind === 'packet' && c.packet.type === 'connect' ? c.packet.protocolVersion : 0, 5);
  });
});
