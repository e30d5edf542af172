// The wire fuzzer's generator: from a seed, the exact bytes a fuzz connection sends. Valid client
// packets of every type come from mqtt-packet; then a fault is put in: bit flips, truncation,
// remaining-length lies and overlong varints, reserved flags, another packet type, inserted or
// deleted bytes, invalid UTF-8 / U+0000 in strings, MQTT 5 property blocks with unknown ids,
// duplicates, wrong value types and lying lengths, huge counts, packet id 0 or ids never used,
// packets before CONNECT, a second CONNECT, random bytes. Pure: no I/O, no clock, no Math.random,
// so `connectionScript(seed, index, version)` gives the same bytes on every run (replayable).
import mqttPacket, { type Packet } from 'mqtt-packet';

export type Version = 4 | 5;

/** mulberry32: a small, fast, seedable 32-bit PRNG. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  u32(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Mix a run seed and a connection index into the seed of that connection's generator. */
export function connectionSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// Strings with markers: '~~~' is replaced after encoding by a 3-byte fault of the same length
// (so framing stays right and only the string content is wrong).
const MARK = '~~~';
const STRING_FAULTS = [
  Buffer.from([0xc3, 0x28, 0x61]), // invalid continuation
  Buffer.from([0xed, 0xa0, 0x80]), // UTF-16 surrogate in UTF-8
  Buffer.from([0xc0, 0x80, 0x61]), // overlong NUL
  Buffer.from([0xff, 0xfe, 0xfd]), // bytes never valid in UTF-8
  Buffer.from([0x61, 0x00, 0x62]), // U+0000
  Buffer.from([0xef, 0xbf, 0xbf]), // U+FFFF noncharacter (allowed, but must pass safely)
  Buffer.from([0xe2, 0x80, 0xa8]), // U+2028
  Buffer.from([0x5c, 0x75, 0x30]), // "\u0" (a JSON escape fragment)
];

export const TOPICS = ['fz/a', 'fz/b/c', 'fz/a/b/c/d', 'fz', '/fz', 'fz/', '$SYS/fz', 'fz/é', 'fz/\u{1F600}', 'a'];
const FILTERS = ['fz/#', 'fz/+', 'fz/+/c', '#', '+', '+/+', '$SYS/#', '$share/g/fz/#', '$share/g/#', '$share//fz', '$share/g', 'fz/#/x', 'fz/a+', '', '/'];
export const CLIENT_IDS = ['fz-0', 'fz-1', 'fz-2', 'fz-3', 'fz-4', 'fz-5', 'fz-6', 'fz-7', ''];

/** A string used by a generated packet: mostly from the vocabulary, sometimes faulty or long. */
function str(rng: Rng, vocabulary: readonly string[]): string {
  const r = rng.int(100);
  if (r < 70) return rng.pick(vocabulary);
  if (r < 85) return `${rng.pick(vocabulary)}${MARK}`; // a fault put in after encoding
  if (r < 90) return `${rng.pick(vocabulary)}/\u0000`; // U+0000 encoded validly
  if (r < 94) return 'fz/' + 'x'.repeat(rng.range(100, 4000));
  if (r < 97) return 'fz' + '/l'.repeat(rng.range(10, 300));
  return rng.bytes(rng.range(1, 20)).toString('latin1');
}

function packetId(rng: Rng): number {
  const r = rng.int(100);
  if (r < 88) return rng.range(1, 8);
  if (r < 92) return 0;
  if (r < 96) return 65535;
  return rng.range(1, 65535);
}

/** A 5.0 property block (length varint + properties), built byte by byte so it can be wrong. */
function propertyBlock(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const n = rng.chance(0.05) ? rng.range(100, 3000) : rng.range(0, 5);
  const u16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(v & 0xffff); return b; };
  const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
  const s = (text: string): Buffer => Buffer.concat([u16(Buffer.byteLength(text)), Buffer.from(text)]);
  const faultyString = (): Buffer => {
    const f = rng.pick(STRING_FAULTS);
    return Buffer.concat([u16(f.length + 1), Buffer.from('k'), f]);
  };
  const anyU32 = (): number => rng.pick([0, 1, 60, 0x7fffffff, 0x80000000, 2592000, 999999999, 0xfffffffe, 0xffffffff, rng.u32()]);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    if (r < 20) {
      // User Property, sometimes with a faulty key or value
      parts.push(Buffer.from([0x26]), rng.chance(0.2) ? faultyString() : s(rng.pick(['k', 'a', 'b', 'k'])), rng.chance(0.2) ? faultyString() : s(rng.pick(['v', '', 'w'])));
    } else if (r < 60) {
      const id = rng.pick([0x01, 0x02, 0x03, 0x08, 0x09, 0x0b, 0x11, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1f, 0x21, 0x22, 0x23, 0x27, 0x12, 0x13, 0x1a, 0x1c, 0x24, 0x25, 0x28, 0x29, 0x2a]);
      parts.push(Buffer.from([id]));
      switch (id) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a:
          parts.push(Buffer.from([rng.pick([0, 1, 2, 255])])); break;
        case 0x02: case 0x11: case 0x18: case 0x27:
          parts.push(u32(anyU32())); break;
        case 0x13: case 0x21: case 0x22: case 0x23:
          parts.push(u16(rng.pick([0, 1, 2, 64, 65535, rng.int(65536)]))); break;
        case 0x0b:
          parts.push(rng.pick([Buffer.from([0x00]), Buffer.from([0x01]), Buffer.from([0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), Buffer.from([0x81, 0x00])])); break;
        case 0x09: case 0x16:
          parts.push(u16(3), rng.bytes(3)); break;
        default:
          parts.push(rng.chance(0.4) ? faultyString() : s(rng.pick(['fz/r', 'text/plain', '', 'SCRAM-SHA-1']))); break;
      }
    } else if (r < 80) {
      // Unknown or reserved identifier with random bytes after it
      parts.push(Buffer.from([rng.pick([0x00, 0x04, 0x05, 0x07, 0x0a, 0x7f, 0x80, 0xff, rng.int(256)])]), rng.bytes(rng.int(6)));
    } else {
      // A string property whose length runs past the end
      parts.push(Buffer.from([rng.pick([0x03, 0x08, 0x1f, 0x26, 0x15, 0x1a])]), u16(rng.range(100, 65535)), Buffer.from('ab'));
    }
  }
  if (rng.chance(0.1)) {
    // Last in the block: a string property whose length runs past the whole packet (the block ends after its length field)
    parts.push(Buffer.from([rng.pick([0x03, 0x08, 0x1f, 0x15, 0x1a, 0x1c, 0x12, 0x26])]), u16(rng.range(1000, 65535)));
  }
  const body = Buffer.concat(parts);
  let len = body.length;
  if (rng.chance(0.15)) len = rng.pick([0, body.length + 1, Math.max(0, body.length - 1), rng.int(300000)]);
  return Buffer.concat([encodeVarint(len, rng.chance(0.1) ? rng.range(1, 3) : 0), body]);
}

/** Remaining-length varint; `pad` extra continuation bytes make an overlong (or, past 4 bytes, invalid) form. */
export function encodeVarint(n: number, pad = 0): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0 || pad > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  for (let i = 0; i < pad; i++) out.push(i === pad - 1 ? 0x00 : 0x80);
  return Buffer.from(out);
}

/** Length of the fixed header of `b` (1 + varint bytes), or undefined if it is not readable. */
function headerLength(b: Buffer): number | undefined {
  for (let i = 1; i < Math.min(b.length, 5); i++) if ((b[i]! & 0x80) === 0) return i + 1;
  return undefined;
}

/** Rebuild a packet from its first byte and body, fixing the remaining length. */
function frame(first: number, body: Buffer, pad = 0): Buffer {
  return Buffer.concat([Buffer.from([first]), encodeVarint(body.length, pad), body]);
}

/** Replace the property block of a 5.0 packet (at `offset` in its body, currently an empty block "00"). */
function withProperties(packet: Buffer, offset: number, block: Buffer): Buffer {
  const h = headerLength(packet)!;
  const body = packet.subarray(h);
  if (body[offset] !== 0x00) return packet;
  return frame(packet[0]!, Buffer.concat([body.subarray(0, offset), block, body.subarray(offset + 1)]));
}

/** Put string faults in where the encoder wrote markers. */
function applyMarkers(rng: Rng, b: Buffer): Buffer {
  let i = b.indexOf(MARK);
  while (i >= 0) {
    rng.pick(STRING_FAULTS).copy(b, i);
    i = b.indexOf(MARK, i + 3);
  }
  return b;
}

function gen(p: Packet, version: Version): Buffer | undefined {
  try {
    return mqttPacket.generate(p, { protocolVersion: version });
  } catch {
    return undefined; // mqtt-packet refused the (deliberately odd) fields
  }
}

/** A CONNECT: valid, or with odd fields; `faulty` says whether a fault was put in on purpose. */
export function connectPacket(rng: Rng, version: Version): { bytes: Buffer; faulty: boolean } {
  const clean = rng.chance(0.8);
  const p: Packet = {
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean,
    keepalive: rng.pick([0, 0, 0, 1, 60, 65535]),
    clientId: rng.chance(0.9) ? rng.pick(CLIENT_IDS) : str(rng, CLIENT_IDS),
  };
  let faulty = false;
  if (version === 5) p.properties = { sessionExpiryInterval: clean ? 0 : rng.pick([0, 1, 5]) };
  if (rng.chance(0.15)) {
    p.will = { topic: str(rng, TOPICS), payload: Buffer.from('will'), qos: rng.pick([0, 1, 2]) as 0 | 1 | 2, retain: rng.chance(0.3) };
    if (version === 5 && rng.chance(0.5)) p.will.properties = { willDelayInterval: rng.pick([0, 1, 0xffffffff]), messageExpiryInterval: rng.pick([1, 0xffffffff]) };
  }
  if (rng.chance(0.1)) { p.username = str(rng, ['u', '']); faulty = true; }
  if (rng.chance(0.05)) p.password = Buffer.from('p');
  let bytes = gen(p, version) ?? gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: 'fz-x' }, version)!;
  if (bytes.includes(MARK)) faulty = true;
  bytes = applyMarkers(rng, bytes);
  if (version === 5 && rng.chance(0.1)) { bytes = withProperties(bytes, 10, propertyBlock(rng)); faulty = true; }
  if (rng.chance(0.1)) {
    // Header fields a generator refuses to write: protocol name, level, reserved connect flag, will flags
    const h = headerLength(bytes)!;
    const b = Buffer.from(bytes);
    const which = rng.int(4);
    if (which === 0) b[h + 2 + rng.int(4)] = rng.pick([0x6d, 0x00, 0xff]); // "MQTT" spelled wrong
    else if (which === 1) b[h + 6] = rng.pick([0, 3, 4, 5, 6, 0x84, 0x85, 255]); // protocol level
    else if (which === 2) b[h + 7] = b[h + 7]! | 0x01; // reserved connect flag [MQTT-3.1.2-3]
    else b[h + 7] = rng.int(256); // any combination of flags
    bytes = b;
    faulty = true;
  }
  return { bytes, faulty };
}

type Kind = 'publish' | 'puback' | 'pubrec' | 'pubrel' | 'pubcomp' | 'subscribe' | 'unsubscribe' | 'pingreq' | 'disconnect' | 'auth' | 'connect' | 'server';
const KINDS: readonly Kind[] = [
  'publish', 'publish', 'publish', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'subscribe',
  'unsubscribe', 'pingreq', 'disconnect', 'auth', 'connect', 'server',
];

/** One client packet of a random type; `faulty` when a fault was generated into its fields. */
export function anyPacket(rng: Rng, version: Version): { bytes: Buffer; faulty: boolean } {
  const kind = rng.pick(KINDS);
  let faulty = false;
  let bytes: Buffer | undefined;
  let propsAt = -1;
  switch (kind) {
    case 'publish': {
      const qos = rng.pick([0, 0, 1, 1, 2]) as 0 | 1 | 2;
      const topic = str(rng, TOPICS);
      const large = rng.chance(0.03);
      const payload = large ? rng.bytes(rng.range(1000, 300000)) : rng.bytes(rng.int(64));
      // Retained only on the vocabulary's topics, so the janitor (fuzz-run.ts) can clear them all
      const p: Packet = { cmd: 'publish', topic, payload, qos, retain: !large && TOPICS.includes(topic) && rng.chance(0.1), dup: qos > 0 && rng.chance(0.2), messageId: qos > 0 ? packetId(rng) : undefined };
      if (version === 5 && rng.chance(0.3)) {
        p.properties = {
          ...(rng.chance(0.5) ? { userProperties: { k: rng.chance(0.3) ? ['a', 'b', '\u0000'] : 'v', z: 'y', a: 'x' } } : {}),
          ...(rng.chance(0.3) ? { messageExpiryInterval: rng.pick([1, 0xffffffff]) } : {}),
          ...(rng.chance(0.3) ? { topicAlias: rng.range(0, 70) } : {}),
          ...(rng.chance(0.2) ? { payloadFormatIndicator: true } : {}),
          ...(rng.chance(0.2) ? { responseTopic: str(rng, TOPICS), correlationData: Buffer.from('c') } : {}),
          ...(rng.chance(0.1) ? { contentType: str(rng, ['text/plain']) } : {}),
        };
        if (rng.chance(0.3) && p.properties.topicAlias) p.topic = '';
      }
      bytes = gen(p, version);
      if (bytes && version === 5 && !p.properties) propsAt = 2 + Buffer.byteLength(topic) + (qos > 0 ? 2 : 0);
      faulty = qos > 0 && p.messageId === 0;
      break;
    }
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': {
      // Built by hand: the 5.0 forms with reason code and properties
      const id = Buffer.alloc(2);
      id.writeUInt16BE(packetId(rng));
      const type = { puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7 }[kind];
      const first = (type << 4) | (kind === 'pubrel' ? 0x02 : 0);
      if (version === 5 && rng.chance(0.5)) {
        bytes = frame(first, Buffer.concat([id, Buffer.from([rng.pick([0x00, 0x10, 0x80, 0x92, 0xff])]), Buffer.from([0x00])]));
        propsAt = 3;
      } else {
        bytes = frame(first, id);
      }
      faulty = id.readUInt16BE() === 0;
      break;
    }
    case 'subscribe': {
      const n = rng.chance(0.03) ? rng.range(200, 5000) : rng.range(1, 4);
      const subscriptions = [];
      for (let i = 0; i < n; i++) {
        subscriptions.push({
          topic: str(rng, FILTERS), qos: rng.pick([0, 1, 2]) as 0 | 1 | 2,
          ...(version === 5 ? { nl: rng.chance(0.2), rap: rng.chance(0.2), rh: rng.pick([0, 1, 2]) } : {}),
        });
      }
      const id = packetId(rng);
      const p: Packet = { cmd: 'subscribe', messageId: id, subscriptions };
      if (version === 5 && rng.chance(0.2)) p.properties = { subscriptionIdentifier: rng.pick([1, 2, 268435455]) };
      bytes = gen(p, version);
      if (bytes && rng.chance(0.1)) {
        // Subscription options with reserved bits set, or QoS 3 [MQTT-3.8.3-4/5]
        const b = Buffer.from(bytes);
        b[b.length - 1] = rng.pick([0x03, 0xc0, 0x30 | 0x03, rng.int(256)]);
        bytes = b;
        faulty = true;
      }
      if (bytes && version === 5 && !p.properties) propsAt = 2;
      faulty ||= id === 0 || n > 100;
      break;
    }
    case 'unsubscribe': {
      const n = rng.chance(0.03) ? rng.range(200, 5000) : rng.range(1, 4);
      const unsubscriptions = [];
      for (let i = 0; i < n; i++) unsubscriptions.push(str(rng, FILTERS));
      const id = packetId(rng);
      bytes = gen({ cmd: 'unsubscribe', messageId: id, unsubscriptions }, version);
      if (bytes && version === 5) propsAt = 2;
      faulty = id === 0 || n > 100;
      break;
    }
    case 'pingreq':
      bytes = Buffer.from([0xc0, 0x00]);
      break;
    case 'disconnect':
      if (version === 5 && rng.chance(0.7)) {
        bytes = frame(0xe0, Buffer.from([rng.pick([0x00, 0x04, 0x80, 0x8e, 0xff]), 0x00]));
        propsAt = 1;
      } else {
        bytes = Buffer.from([0xe0, 0x00]);
      }
      break;
    case 'auth':
      bytes = frame(0xf0, Buffer.from([rng.pick([0x00, 0x18, 0x19]), 0x00]));
      propsAt = 1;
      faulty = version === 4;
      break;
    case 'connect':
      bytes = connectPacket(rng, version).bytes; // a second CONNECT [MQTT-3.1.0-2]
      faulty = true;
      break;
    case 'server': {
      // Packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) or type 0
      bytes = rng.pick([Buffer.from([0x20, 0x02, 0x00, 0x00]), Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]), Buffer.from([0xb0, 0x02, 0x00, 0x01]), Buffer.from([0xd0, 0x00]), Buffer.from([0x00, 0x00])]);
      faulty = true;
      break;
    }
  }
  bytes ??= Buffer.from([0xc0, 0x00]);
  if (bytes.includes(MARK)) {
    faulty = true;
    bytes = applyMarkers(rng, Buffer.from(bytes));
  }
  if (propsAt >= 0 && version === 5 && rng.chance(0.25)) {
    bytes = withProperties(bytes, propsAt, propertyBlock(rng));
    faulty = true;
  }
  return { bytes, faulty };
}

const MUTATIONS = ['bitflip', 'truncate', 'lengthLie', 'overlong', 'reservedFlags', 'type', 'setByte', 'insert', 'delete', 'garbageTail'] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** A mutated copy of one packet. */
export function mutate(rng: Rng, packet: Buffer): { bytes: Buffer; mutation: Mutation } {
  const mutation = rng.pick(MUTATIONS);
  const h = headerLength(packet) ?? 2;
  const body = packet.subarray(h);
  let out: Buffer;
  switch (mutation) {
    case 'bitflip': {
      out = Buffer.from(packet);
      for (let i = rng.range(1, 4); i > 0; i--) {
        const at = rng.int(out.length);
        out[at]! ^= 1 << rng.int(8);
      }
      break;
    }
    case 'truncate':
      out = packet.subarray(0, rng.int(packet.length));
      break;
    case 'lengthLie': {
      const lie = rng.pick([0, 1, Math.max(0, body.length - 1), body.length + 1, body.length + rng.range(2, 64), rng.int(body.length * 2 + 2), 1048577, 268435455]);
      out = Buffer.concat([Buffer.from([packet[0]!]), encodeVarint(lie), body]);
      break;
    }
    case 'overlong':
      out = frame(packet[0]!, body, rng.range(1, 4)); // 4 padding bytes make a 5-byte varint
      break;
    case 'reservedFlags':
      out = Buffer.from(packet);
      out[0] = (out[0]! & 0xf0) | rng.int(16);
      break;
    case 'type':
      out = Buffer.from(packet);
      out[0] = (rng.int(16) << 4) | (out[0]! & 0x0f);
      break;
    case 'setByte': {
      out = Buffer.from(packet);
      out[rng.int(out.length)] = rng.pick([0x00, 0xff, 0x80, 0x7f, rng.int(256)]);
      break;
    }
    case 'insert': {
      const at = rng.range(h, packet.length);
      const keepLength = rng.chance(0.5);
      const extra = rng.bytes(rng.range(1, 8));
      const b = Buffer.concat([body.subarray(0, at - h), extra, body.subarray(at - h)]);
      out = keepLength ? Buffer.concat([packet.subarray(0, h), b]) : frame(packet[0]!, b);
      break;
    }
    case 'delete': {
      if (body.length === 0) { out = packet.subarray(0, 1); break; }
      const at = rng.int(body.length);
      const n = rng.range(1, Math.min(8, body.length - at));
      const b = Buffer.concat([body.subarray(0, at), body.subarray(at + n)]);
      out = rng.chance(0.5) ? Buffer.concat([packet.subarray(0, h), b]) : frame(packet[0]!, b);
      break;
    }
    case 'garbageTail':
      out = Buffer.concat([packet, rng.bytes(rng.range(1, 32))]);
      break;
  }
  return { bytes: out, mutation };
}

/** What one fuzz connection sends. */
export interface ConnectionScript {
  /** Byte chunks, each written separately (TCP write or WebSocket message). */
  chunks: Buffer[];
  /** Packets in it, and how many of them are mutated or generated with a fault. */
  packets: number;
  mutated: number;
  /** Wait for the broker's answer to a final PINGREQ (or its close) before closing. */
  interactive: boolean;
  /** How it starts: 'connect', 'no-connect' (packets before CONNECT), 'random' (random bytes). */
  shape: 'connect' | 'no-connect' | 'random';
}

/** The bytes fuzz connection `index` of a run with `seed` sends. Deterministic. */
export function connectionScript(seed: number, index: number, version: Version): ConnectionScript {
  const rng = new Rng(connectionSeed(seed, index));
  const packets: Buffer[] = [];
  let mutated = 0;
  const r = rng.int(100);
  const shape = r < 90 ? 'connect' : r < 96 ? 'no-connect' : 'random';
  if (shape === 'random') {
    for (let i = rng.range(1, 8); i > 0; i--) packets.push(rng.bytes(rng.range(1, 200)));
    mutated = packets.length;
  } else {
    if (shape === 'connect') {
      const c = connectPacket(rng, version);
      let bytes = c.bytes;
      let bad = c.faulty;
      if (rng.chance(0.1)) { bytes = mutate(rng, bytes).bytes; bad = true; }
      packets.push(bytes);
      if (bad) mutated++;
      // Then valid packets only (subscriptions, publishes, flows), so that the faults below meet a session with state
      for (let i = rng.range(0, 8), tries = 0; i > 0 && tries < 50; tries++) {
        const p = anyPacket(rng, version);
        if (p.faulty || p.bytes[0]! >> 4 >= 14) continue; // no DISCONNECT or AUTH here
        packets.push(p.bytes);
        i--;
      }
    }
    // A burst in which each packet may be mutated (with this connection's rate) or generated with a fault
    const pMutate = rng.pick([0.1, 0.25, 0.5, 0.8]);
    for (let i = rng.range(1, 40); i > 0; i--) {
      const p = anyPacket(rng, version);
      let bytes = p.bytes;
      let bad = p.faulty;
      if (rng.chance(pMutate)) { bytes = mutate(rng, bytes).bytes; bad = true; }
      packets.push(bytes);
      if (bad) mutated++;
    }
  }
  const interactive = rng.chance(0.3);
  if (interactive) packets.push(Buffer.from([0xc0, 0x00]));
  // Cut the stream into chunks at random places (packets spanning chunks, several per chunk)
  const stream = Buffer.concat(packets);
  const chunks: Buffer[] = [];
  const pieces = rng.chance(0.5) ? 1 : rng.range(2, 6);
  let at = 0;
  for (let i = 1; i < pieces && at < stream.length; i++) {
    const next = rng.range(at + 1, stream.length);
    chunks.push(stream.subarray(at, next));
    at = next;
  }
  if (at < stream.length) chunks.push(stream.subarray(at));
  return { chunks, packets: packets.length - (interactive ? 1 : 0), mutated, interactive, shape };
}
