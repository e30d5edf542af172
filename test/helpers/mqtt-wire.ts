// MQTT bytes for the raw peers of the tests and the benchmark: hex, a CONNECT built byte by byte,
// mqtt-packet encoding and one-frame decoding, and the load generator's hot path (a framer that
// splits a stream in place, a PUBLISH template, 4-byte acks). No sockets, no protocol logic.
import mqttPacket, { type IConnackPacket, type Packet } from 'mqtt-packet';
import type { Version } from './clients.ts';

export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const SUBACK = 9;

/** Bytes from hex; whitespace is ignored ("30 07 0003 612f62"). */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Encode one packet for `version` (client-to-server packets, or deliberately wrong ones). */
export function encode(packet: Packet, version: Version): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** The CONNACK's result code for either protocol version (0 is success). */
export function connackCode(p: IConnackPacket): number {
  return p.reasonCode ?? p.returnCode ?? -1;
}

function varInt(n: number): number[] {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    out.push(d);
  } while (n > 0);
  return out;
}

/** A UTF-8 string as MQTT hex (two-byte length, then bytes), for `ConnectSpec.tail`. */
export function mqttString(s: string): string {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return len.toString('hex') + b.toString('hex');
}

/** Fields of a hand-built CONNECT; anything not given takes a valid default. */
export interface ConnectSpec {
  protocolName?: string;
  level?: number;
  /** Connect flags byte; default 0x02 (clean start). */
  flags?: number;
  keepAlive?: number;
  /** 5.0 properties as hex (without their length); default none. Ignored below level 5. */
  properties?: string;
  clientId?: string;
  /** Bytes appended after the client id (will, user name, password), as hex. */
  tail?: string;
}

/** A CONNECT packet built byte by byte, so that tests can make it wrong in exactly one place. */
export function connectBytes(spec: ConnectSpec = {}): Buffer {
  const level = spec.level ?? 4;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(spec.keepAlive ?? 0);
  const propsHex = (spec.properties ?? '').replace(/\s+/g, '');
  const props = level === 5 ? Buffer.from(varInt(propsHex.length / 2)).toString('hex') + propsHex : '';
  const body = hex(mqttString(spec.protocolName ?? 'MQTT') + Buffer.from([level, spec.flags ?? 0x02]).toString('hex')
    + ka.toString('hex') + props + mqttString(spec.clientId ?? 'raw') + (spec.tail ?? ''));
  return Buffer.concat([Buffer.from([0x10, ...varInt(body.length)]), body]);
}

/** Decodes complete frames one at a time with mqtt-packet (a bad frame does not poison the next). */
class FrameDecoder {
  readonly #parser: ReturnType<typeof mqttPacket.parser>;
  #packet: Packet | undefined;
  #error: Error | undefined;

  constructor(version: Version) {
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on('packet', (p: Packet) => { this.#packet = p; });
    this.#parser.on('error', (e: Error) => { this.#error = e; });
  }

  decode(buf: Buffer, head: number, end: number): Packet | Error {
    this.#packet = undefined;
    this.#error = undefined;
    this.#parser.parse(buf.subarray(head, end));
    return this.#error ?? this.#packet ?? new Error(`frame of ${end - head} bytes decoded to nothing`);
  }
}

// One per version is enough: a frame is complete and parsed synchronously, and mqtt-packet
// consumes exactly one packet's bytes; after a failure the next frame gets a fresh parser
const decoders: Partial<Record<Version, FrameDecoder>> = {};

/** The packet in `buf[head, end)` (one complete frame, as Framer finds it), or the Error mqtt-packet raised for it. */
export function decodeFrame(version: Version, buf: Buffer, head: number, end: number): Packet | Error {
  const p = (decoders[version] ??= new FrameDecoder(version)).decode(buf, head, end);
  if (p instanceof Error) delete decoders[version];
  return p;
}

// ---- the load generator's hot path --------------------------------------------------------------
// mqtt-packet's parser tops out near 400,000 packets/s on a small machine and would saturate the
// generator before the broker: PUBLISH and the acks are encoded from templates and read in place.

/** Benchmark payload: [u32 stream][u32 seq][f64 monotonic send time in ns] + zero padding. */
export const PAYLOAD_BYTES = 64;

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP for `id`, without properties. */
export function encodeAck(type: number, id: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = (type << 4) | (type === PUBREL ? 0x02 : 0);
  b[1] = 2;
  b.writeUInt16BE(id, 2);
  return b;
}

/** A 3.1.1 PUBLISH template for one topic and QoS; `make` copies it and fills id, stream, seq and time. */
export class PublishTemplate {
  readonly #tpl: Buffer;
  readonly #idAt: number;
  readonly #payloadAt: number;

  constructor(topic: string, qos: 0 | 1 | 2) {
    const t = Buffer.from(topic);
    const remaining = 2 + t.length + (qos > 0 ? 2 : 0) + PAYLOAD_BYTES;
    const head = [0x30 | (qos << 1), ...varInt(remaining)];
    this.#tpl = Buffer.alloc(head.length + remaining);
    Buffer.from(head).copy(this.#tpl, 0);
    this.#tpl.writeUInt16BE(t.length, head.length);
    t.copy(this.#tpl, head.length + 2);
    this.#idAt = head.length + 2 + t.length;
    this.#payloadAt = this.#idAt + (qos > 0 ? 2 : 0);
  }

  make(id: number, stream: number, seq: number, sentNs: number): Buffer {
    const b = Buffer.allocUnsafe(this.#tpl.length);
    this.#tpl.copy(b);
    if (this.#payloadAt !== this.#idAt) b.writeUInt16BE(id, this.#idAt);
    b.writeUInt32BE(stream, this.#payloadAt);
    b.writeUInt32BE(seq, this.#payloadAt + 4);
    b.writeDoubleBE(sentNs, this.#payloadAt + 8);
    return b;
  }
}

/** One frame: packet type and flags; `start`..`end` is the body (after the fixed header), `head` where the packet begins. */
export type FrameHandler = (type: number, flags: number, buf: Buffer, start: number, end: number, head: number) => void;

/** Splits a byte stream into MQTT frames (frames may span chunks; chunks may hold many frames). */
export class Framer {
  #rest: Buffer | null = null;

  push(chunk: Buffer, onFrame: FrameHandler): void {
    let b = chunk;
    if (this.#rest) {
      b = Buffer.concat([this.#rest, chunk]);
      this.#rest = null;
    }
    let off = 0;
    const n = b.length;
    while (off < n) {
      if (n - off < 2) break;
      let len = 0;
      let mul = 1;
      let p = off + 1;
      let complete = false;
      for (let i = 0; i < 4 && p < n; i++) {
        const d = b[p++]!;
        len += (d & 0x7f) * mul;
        mul *= 128;
        if ((d & 0x80) === 0) { complete = true; break; }
      }
      if (!complete || p + len > n) break;
      const h = b[off]!;
      onFrame(h >> 4, h & 0x0f, b, p, p + len, off);
      off = p + len;
    }
    if (off < n) this.#rest = b.subarray(off);
  }
}
