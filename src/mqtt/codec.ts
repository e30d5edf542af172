// The MQTT wire format: framing of a byte stream into packets (size limit enforced from the
// fixed header, before buffering), decoding through mqtt-packet, and encoding. The only module
// that imports mqtt-packet. Pure: no I/O, no timers.
import mqttPacket from 'mqtt-packet';
import type { Packet as WirePacket, Parser } from 'mqtt-packet';
import { isUtf8 } from 'node:buffer';
import { MqttError } from './errors.ts';
import type {
  ConnectPacket, InboundPacket, MessageProperties, OutboundPacket, ProtocolVersion, PublishPacket, QoS,
  UserProperties,
} from './packet.ts';
import { ReasonCode } from './reason-code.ts';

const PUBLISH = 3;
const CONNECT = 1;

/** What a reader hands back for each complete packet, or the reason the stream is unusable. */
export type ReadResult =
  | { kind: 'packet'; packet: InboundPacket }
  /** The first packet was a CONNECT with a protocol level we don't speak [MQTT-3.1.2-2]. */
  | { kind: 'unsupported-protocol'; protocolVersion: number };

/**
 * Splits a byte stream into MQTT packets and decodes them. A packet may span many chunks and a
 * chunk may hold many packets. The remaining length is checked against `maxPacketBytes` as soon
 * as the fixed header is readable, so an oversized packet is refused before it is buffered.
 */
export class PacketReader {
  #chunks: Buffer[] = [];
  #length = 0;
  /** Total size of the packet at the head of the buffer, once its fixed header is known. */
  #needed = -1;
  #sawConnect = false;
  #version: ProtocolVersion | undefined;
  maxPacketBytes: number;

  constructor(maxPacketBytes: number) {
    this.maxPacketBytes = maxPacketBytes;
  }

  /** Protocol version learned from CONNECT (undefined before it). */
  get protocolVersion(): ProtocolVersion | undefined {
    return this.#version;
  }

  /**
   * Append bytes and call `onResult` for each complete packet. Throws MqttError for malformed
   * or oversized input; the caller must close the connection then.
   */
  push(chunk: Buffer, onResult: (r: ReadResult) => boolean | void): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    while (this.#length > 0) {
      if (this.#needed < 0) {
        const head = this.#chunks.length === 1 ? this.#chunks[0]! : this.#flatten();
        const total = readFixedHeader(head);
        if (total === undefined) return; // header incomplete
        if (total > this.maxPacketBytes) {
          throw new MqttError(ReasonCode.PacketTooLarge, `packet of ${total} bytes exceeds ${this.maxPacketBytes}`);
        }
        this.#needed = total;
      }
      if (this.#length < this.#needed) return;
      const buf = this.#chunks.length === 1 ? this.#chunks[0]! : this.#flatten();
      const packetBytes = buf.length === this.#needed ? buf : buf.subarray(0, this.#needed);
      const rest = buf.length === this.#needed ? undefined : buf.subarray(this.#needed);
      this.#chunks = rest ? [rest] : [];
      this.#length = rest ? rest.length : 0;
      this.#needed = -1;
      const result = this.#decode(packetBytes);
      if (onResult(result) === false) return;
    }
  }

  #flatten(): Buffer {
    const b = Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [b];
    return b;
  }

  #decode(bytes: Buffer): ReadResult {
    const type = bytes[0]! >> 4;
    if (!this.#sawConnect && type === CONNECT) {
      const level = peekProtocolLevel(bytes);
      if (level !== undefined && level !== 4 && level !== 5) return { kind: 'unsupported-protocol', protocolVersion: level };
    }
    if (type === PUBLISH) checkPublishTopicBytes(bytes);
    checkFraming(bytes, this.#version);
    if (this.#version !== undefined) {
      const fast = decodeHot(bytes, this.#version);
      if (fast) return { kind: 'packet', packet: fast };
    }
    const wire = parseWhole(bytes, this.#version ?? 4);
    if ('properties' in wire) checkProperties(wire.properties);
    if (wire.cmd === 'connect') checkProperties(wire.will?.properties);
    if ('messageId' in wire) checkPacketId(wire.messageId);
    const packet = fromWire(wire);
    if (packet.type === 'connect') {
      this.#sawConnect = true;
      this.#version = packet.protocolVersion;
    }
    return { kind: 'packet', packet };
  }
}

/**
 * mqtt-packet parsers shared by every connection, one per protocol version: the reader hands
 * them exactly one whole packet at a time, so they hold no state between calls and a
 * connection costs no parser of its own.
 */
interface SharedParser {
  parser: Parser & { settings: object; _pos: number; _resetState(): void };
  decoded: WirePacket | undefined;
  error: Error | undefined;
}
const sharedParsers = new Map<ProtocolVersion, SharedParser>();

function parseWhole(bytes: Buffer, version: ProtocolVersion): WirePacket {
  let sp = sharedParsers.get(version);
  if (!sp) {
    const created: SharedParser = {
      parser: mqttPacket.parser({ protocolVersion: version }) as SharedParser['parser'], decoded: undefined, error: undefined,
    };
    created.parser.on('packet', (p: WirePacket) => { created.decoded = p; });
    created.parser.on('error', (e: Error) => { created.error = e; });
    sharedParsers.set(version, created);
    sp = created;
  }
  sp.decoded = undefined;
  sp.error = undefined;
  let rest = 0;
  try {
    rest = sp.parser.parse(bytes);
  } catch (e) {
    sp.error = e as Error;
  }
  const decoded = sp.decoded as WirePacket | undefined;
  const error = sp.error as Error | undefined;
  // Parsing CONNECT switches the parser to that packet's settings; parsing may also stop early.
  if (decoded?.cmd === 'connect' || error || rest !== 0 || !decoded) {
    // _resetState leaves the read offset behind, which the next header parse would use
    sp.parser._resetState();
    sp.parser._pos = 0;
    sp.parser.settings = { protocolVersion: version };
  }
  if (error || !decoded) throw new MqttError(ReasonCode.MalformedPacket, error?.message ?? 'incomplete packet');
  if (rest !== 0) throw new MqttError(ReasonCode.MalformedPacket, `${rest} unexpected bytes after the packet`);
  return decoded;
}

/**
 * The packets of the message path, decoded without mqtt-packet: PUBLISH without properties and
 * the 2-byte acknowledgements. Anything else, or anything odd (QoS 3, wrong flags, truncation),
 * returns undefined and goes through mqtt-packet, which reports the error. Call after
 * checkPublishTopicBytes and checkFraming.
 */
function decodeHot(b: Buffer, version: ProtocolVersion): InboundPacket | undefined {
  const h = b[0]!;
  const type = h >> 4;
  if (type === PUBLISH) {
    const qos = (h >> 1) & 3;
    if (qos === 3) return undefined;
    let off = headerLength(b);
    if (b.length < off + 2) return undefined;
    const topicEnd = off + 2 + b.readUInt16BE(off);
    if (topicEnd > b.length) return undefined;
    const topicName = b.toString('utf8', off + 2, topicEnd);
    off = topicEnd;
    let packetId: number | undefined;
    if (qos > 0) {
      if (off + 2 > b.length) return undefined;
      packetId = b.readUInt16BE(off);
      off += 2;
    }
    if (version === 5) {
      if (off >= b.length || b[off] !== 0) return undefined; // properties: mqtt-packet decodes them
      off += 1;
    }
    const view = b.subarray(off);
    // A payload may outlive the read buffer by a long time (queued for an offline session): do not
    // let a small payload pin a large buffer holding other packets.
    const payload = b.buffer.byteLength > 8192 && b.buffer.byteLength > 4 * view.length ? Buffer.from(view) : view;
    return { type: 'publish', topicName, payload, qos: qos as QoS, retain: (h & 1) !== 0, dup: (h & 8) !== 0, packetId, properties: undefined };
  }
  if (type >= 4 && type <= 7 && b.length === 4 && b[1] === 2 && (h & 0xf) === (type === 6 ? 2 : 0)) {
    const packetId = b.readUInt16BE(2);
    const kind = type === 4 ? 'puback' : type === 5 ? 'pubrec' : type === 6 ? 'pubrel' : 'pubcomp';
    return { type: kind, packetId, reasonCode: 0, properties: undefined };
  }
  return undefined;
}

/** Total packet length from a fixed header, or undefined if more bytes are needed. */
function readFixedHeader(b: Buffer): number | undefined {
  let multiplier = 1;
  let value = 0;
  for (let i = 1; i < 5; i++) {
    if (i >= b.length) return undefined;
    const byte = b[i]!;
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return 1 + i + value;
    multiplier *= 128;
  }
  // [MQTT-1.5.5-1] a Variable Byte Integer uses at most four bytes
  throw new MqttError(ReasonCode.MalformedPacket, 'remaining length exceeds four bytes');
}

function headerLength(b: Buffer): number {
  let i = 1;
  while (b[i]! & 0x80) i++;
  return i + 1;
}

/** Protocol level byte of a CONNECT whose protocol name is MQTT or MQIsdp. */
function peekProtocolLevel(b: Buffer): number | undefined {
  const off = headerLength(b);
  if (b.length < off + 2) return undefined;
  const nameLen = b.readUInt16BE(off);
  if (b.length < off + 2 + nameLen + 1) return undefined;
  const name = b.toString('latin1', off + 2, off + 2 + nameLen);
  if (name !== 'MQTT' && name !== 'MQIsdp') return undefined;
  return b[off + 2 + nameLen];
}

/**
 * Remaining-length rules that mqtt-packet does not enforce (it reads a missing packet id as -1
 * and ignores trailing bytes). `version` is undefined before CONNECT.
 */
function checkFraming(b: Buffer, version: ProtocolVersion | undefined): void {
  const type = b[0]! >> 4;
  const off = headerLength(b);
  const remaining = b.length - off;
  let ok = true;
  switch (type) {
    case 4: case 5: case 6: case 7:
      // PUBACK, PUBREC, PUBREL, PUBCOMP: a packet identifier; in 3.1.1 nothing else [v3.1.1 §3.4.1]
      ok = remaining >= 2 && (version === 5 || remaining === 2);
      break;
    case 12:
      // PINGREQ has no variable header and no payload [MQTT-3.12]
      ok = remaining === 0;
      break;
    case 14:
      // 3.1.1 DISCONNECT has no variable header [v3.1.1 §3.14]
      ok = version === 5 || remaining === 0;
      break;
    case PUBLISH:
      if (version === 5 && remaining >= 2) {
        // [MQTT-2.2.2] a 5.0 PUBLISH always has a property length after the topic (and packet id)
        const qos = (b[0]! >> 1) & 3;
        ok = off + 2 + b.readUInt16BE(off) + (qos > 0 ? 2 : 0) < b.length;
      }
      break;
  }
  if (!ok) throw new MqttError(ReasonCode.MalformedPacket, `packet type ${type} with remaining length ${remaining} is malformed`);
}

/**
 * A property other than User Property given more than once is a Protocol Error (MQTT 5 §2.2.2.2
 * and each property's definition). mqtt-packet turns repeats into arrays. It also decodes a
 * string or binary value that runs past the packet as null and a cut-short integer as -1: those
 * are Malformed Packets, as is U+0000 in any string property [MQTT-1.5.4-2] (jsonb refuses it).
 */
function checkProperties(props: object | undefined): void {
  if (!props) return;
  for (const [name, value] of Object.entries(props) as Array<[string, unknown]>) {
    if (name === 'userProperties') {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        // a name that ran past the packet became the key "null"; its value is null too
        if (k.includes('\u0000')) throw malformedProperty(name);
        for (const item of Array.isArray(v) ? v : [v]) if (!isGoodPropertyValue(item)) throw malformedProperty(name);
      }
      continue;
    }
    if (Array.isArray(value)) throw new MqttError(ReasonCode.ProtocolError, `property ${name} appears more than once`);
    if (!isGoodPropertyValue(value)) throw malformedProperty(name);
  }
}

function isGoodPropertyValue(v: unknown): boolean {
  if (typeof v === 'string') return !v.includes('\u0000');
  if (typeof v === 'number') return v >= 0;
  return v !== null && v !== undefined;
}

function malformedProperty(name: string): MqttError {
  return new MqttError(ReasonCode.MalformedPacket, `property ${name} is malformed`);
}

/** mqtt-packet reads a packet id cut short as -1 (it checks only for null): refuse it, never echo it. */
function checkPacketId(id: unknown): void {
  if (id !== undefined && !(typeof id === 'number' && id >= 0 && id <= 0xffff)) {
    throw new MqttError(ReasonCode.MalformedPacket, 'packet identifier is cut short');
  }
}

/** [MQTT-1.5.4-1] [MQTT-1.5.4-2] the topic name must be well-formed UTF-8 without U+0000. */
function checkPublishTopicBytes(b: Buffer): void {
  const off = headerLength(b);
  if (b.length < off + 2) return; // the parser reports the truncation
  const len = b.readUInt16BE(off);
  const topic = b.subarray(off + 2, Math.min(b.length, off + 2 + len));
  if (!isUtf8(topic) || topic.includes(0)) {
    throw new MqttError(ReasonCode.MalformedPacket, 'topic name is not well-formed UTF-8');
  }
}

function toBuffer(p: Buffer | string | undefined): Buffer {
  if (p === undefined) return Buffer.alloc(0);
  return typeof p === 'string' ? Buffer.from(p) : p;
}

function fromWire(p: WirePacket): InboundPacket {
  switch (p.cmd) {
    case 'publish':
      return {
        type: 'publish', topicName: p.topic, payload: toBuffer(p.payload), qos: p.qos, retain: p.retain, dup: p.dup,
        packetId: p.messageId, properties: p.properties,
      };
    case 'connect': {
      const packet: ConnectPacket = {
        type: 'connect', protocolName: p.protocolId ?? 'MQTT', protocolVersion: p.protocolVersion === 5 ? 5 : 4,
        clientId: p.clientId, cleanStart: p.clean ?? true, keepAliveSec: p.keepalive ?? 0,
        username: p.username, password: p.password, properties: p.properties,
      };
      if (p.will) {
        packet.will = {
          topicName: p.will.topic, payload: toBuffer(p.will.payload), qos: p.will.qos ?? 0, retain: p.will.retain ?? false,
          properties: p.will.properties,
        };
      }
      return packet;
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return { type: p.cmd, packetId: p.messageId ?? 0, reasonCode: p.reasonCode ?? 0, properties: p.properties };
    case 'subscribe':
      return {
        type: 'subscribe', packetId: p.messageId ?? 0, properties: p.properties,
        subscriptions: p.subscriptions.map((s) => ({
          topicFilter: s.topic, qos: s.qos, noLocal: s.nl ?? false, retainAsPublished: s.rap ?? false,
          retainHandling: (s.rh ?? 0) as 0 | 1 | 2,
        })),
      };
    case 'unsubscribe':
      return { type: 'unsubscribe', packetId: p.messageId ?? 0, topicFilters: p.unsubscriptions, properties: p.properties };
    case 'pingreq':
      return { type: 'pingreq' };
    case 'disconnect':
      return { type: 'disconnect', reasonCode: p.reasonCode ?? 0, properties: p.properties };
    case 'auth':
      return { type: 'auth', reasonCode: p.reasonCode, properties: p.properties };
    default:
      // [MQTT-4.8.0-1]-style: a server-to-client packet type from a client is a protocol error
      throw new MqttError(ReasonCode.ProtocolError, `unexpected ${p.cmd} from client`);
  }
}

function toWire(p: OutboundPacket, version: ProtocolVersion): WirePacket {
  switch (p.type) {
    case 'connack':
      return version === 5
        ? { cmd: 'connack', sessionPresent: p.sessionPresent, reasonCode: p.reasonCode, properties: p.properties }
        : { cmd: 'connack', sessionPresent: p.sessionPresent, returnCode: p.reasonCode };
    case 'publish':
      return {
        cmd: 'publish', topic: p.topicName, payload: p.payload, qos: p.qos, retain: p.retain, dup: p.dup,
        messageId: p.packetId, properties: p.properties,
      };
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return version === 5
        ? { cmd: p.type, messageId: p.packetId, reasonCode: p.reasonCode, properties: p.properties }
        : { cmd: p.type, messageId: p.packetId };
    case 'suback':
      return { cmd: 'suback', messageId: p.packetId, granted: p.reasonCodes, properties: p.properties };
    case 'unsuback':
      return version === 5
        ? { cmd: 'unsuback', messageId: p.packetId, granted: p.reasonCodes, properties: p.properties }
        : { cmd: 'unsuback', messageId: p.packetId, granted: [] };
    case 'pingresp':
      return { cmd: 'pingresp' };
    case 'disconnect':
      return { cmd: 'disconnect', reasonCode: p.reasonCode, properties: p.properties };
    case 'auth':
      return { cmd: 'auth', reasonCode: p.reasonCode, properties: p.properties };
  }
}

/** Encode a server-to-client packet into one buffer. PUBLISH goes through encodePublish. */
export function encodePacket(p: OutboundPacket, version: ProtocolVersion): Buffer {
  if (p.type === 'publish') {
    return encodePublish(p.topicName, p.payload, p.qos, p.retain, p.dup, p.packetId ?? 0, version === 5 ? p.properties : undefined, version === 5);
  }
  if (version === 4 && (p.type === 'puback' || p.type === 'pubrec' || p.type === 'pubcomp' || p.type === 'pubrel')) {
    const b = Buffer.allocUnsafe(4);
    b[0] = p.type === 'puback' ? 0x40 : p.type === 'pubrec' ? 0x50 : p.type === 'pubrel' ? 0x62 : 0x70;
    b[1] = 2;
    b.writeUInt16BE(p.packetId, 2);
    return b;
  }
  return mqttPacket.generate(toWire(p, version), { protocolVersion: version });
}

/** Properties of an outbound PUBLISH (MQTT 5). */
export type PublishProperties = NonNullable<PublishPacket['properties']>;

function utf8Len(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function varIntLen(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

function writeVarInt(b: Buffer, off: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    b[off++] = byte;
  } while (n > 0);
  return off;
}

function userPropertyPairs(u: UserProperties): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(u)) {
    if (Array.isArray(v)) for (const item of v) pairs.push([k, item]);
    else pairs.push([k, v]);
  }
  return pairs;
}

function propertiesLength(p: PublishProperties): number {
  let n = 0;
  if (p.payloadFormatIndicator !== undefined) n += 2;
  if (p.messageExpiryInterval !== undefined) n += 5;
  if (p.topicAlias !== undefined) n += 3;
  if (p.contentType !== undefined) n += 3 + utf8Len(p.contentType);
  if (p.responseTopic !== undefined) n += 3 + utf8Len(p.responseTopic);
  if (p.correlationData !== undefined) n += 3 + p.correlationData.length;
  if (p.userProperties) for (const [k, v] of userPropertyPairs(p.userProperties)) n += 5 + utf8Len(k) + utf8Len(v);
  if (p.subscriptionIdentifier !== undefined) {
    const ids = Array.isArray(p.subscriptionIdentifier) ? p.subscriptionIdentifier : [p.subscriptionIdentifier];
    for (const id of ids) n += 1 + varIntLen(id);
  }
  return n;
}

function writeString(b: Buffer, off: number, s: string): number {
  const len = b.write(s, off + 2, 'utf8');
  b.writeUInt16BE(len, off);
  return off + 2 + len;
}

function writeProperties(b: Buffer, off: number, p: PublishProperties): number {
  if (p.payloadFormatIndicator !== undefined) { b[off++] = 0x01; b[off++] = p.payloadFormatIndicator ? 1 : 0; }
  if (p.messageExpiryInterval !== undefined) { b[off++] = 0x02; b.writeUInt32BE(p.messageExpiryInterval, off); off += 4; }
  if (p.contentType !== undefined) { b[off++] = 0x03; off = writeString(b, off, p.contentType); }
  if (p.responseTopic !== undefined) { b[off++] = 0x08; off = writeString(b, off, p.responseTopic); }
  if (p.correlationData !== undefined) {
    b[off++] = 0x09; b.writeUInt16BE(p.correlationData.length, off); p.correlationData.copy(b, off + 2);
    off += 2 + p.correlationData.length;
  }
  if (p.subscriptionIdentifier !== undefined) {
    const ids = Array.isArray(p.subscriptionIdentifier) ? p.subscriptionIdentifier : [p.subscriptionIdentifier];
    for (const id of ids) { b[off++] = 0x0b; off = writeVarInt(b, off, id); }
  }
  if (p.topicAlias !== undefined) { b[off++] = 0x23; b.writeUInt16BE(p.topicAlias, off); off += 2; }
  if (p.userProperties) {
    for (const [k, v] of userPropertyPairs(p.userProperties)) { b[off++] = 0x26; off = writeString(b, off, k); off = writeString(b, off, v); }
  }
  return off;
}

/**
 * Encode a PUBLISH into one buffer without intermediate chunks. `properties` is undefined for
 * 3.1.1. The packet id (QoS > 0) sits at `publishPacketIdOffset(buf)` so fan-out can patch a copy.
 */
export function encodePublish(
  topicName: string, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, packetId: number,
  properties: PublishProperties | undefined, v5 = properties !== undefined,
): Buffer {
  const topicLen = utf8Len(topicName);
  const propsLen = v5 ? (properties ? propertiesLength(properties) : 0) : -1;
  const remaining = 2 + topicLen + (qos > 0 ? 2 : 0) + (propsLen >= 0 ? varIntLen(propsLen) + propsLen : 0) + payload.length;
  const b = Buffer.allocUnsafe(1 + varIntLen(remaining) + remaining);
  b[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let off = writeVarInt(b, 1, remaining);
  b.writeUInt16BE(topicLen, off);
  off += 2;
  off += b.write(topicName, off, 'utf8');
  if (qos > 0) { b.writeUInt16BE(packetId, off); off += 2; }
  if (propsLen >= 0) {
    off = writeVarInt(b, off, propsLen);
    if (properties) off = writeProperties(b, off, properties);
  }
  payload.copy(b, off);
  return b;
}

/** Offset of the packet identifier in an encoded QoS > 0 PUBLISH. */
export function publishPacketIdOffset(b: Buffer): number {
  const off = headerLength(b);
  return off + 2 + b.readUInt16BE(off);
}

/** Set the DUP flag and packet id of an encoded PUBLISH in place. */
export function patchPublish(b: Buffer, packetId: number, dup: boolean): void {
  b[0] = dup ? b[0]! | 0x08 : b[0]! & ~0x08;
  b.writeUInt16BE(packetId, publishPacketIdOffset(b));
}

/** Strip absent keys so equality checks and encoders see only what is set. */
export function compactProperties(p: MessageProperties | undefined): MessageProperties | undefined {
  if (!p) return undefined;
  const out: MessageProperties = {};
  let any = false;
  if (p.payloadFormatIndicator !== undefined) { out.payloadFormatIndicator = p.payloadFormatIndicator; any = true; }
  if (p.contentType !== undefined) { out.contentType = p.contentType; any = true; }
  if (p.responseTopic !== undefined) { out.responseTopic = p.responseTopic; any = true; }
  if (p.correlationData !== undefined) { out.correlationData = p.correlationData; any = true; }
  if (p.userProperties !== undefined) { out.userProperties = p.userProperties; any = true; }
  return any ? out : undefined;
}
