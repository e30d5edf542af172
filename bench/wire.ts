// MQTT 3.1.1 wire helpers for the load generator: CONNECT/SUBSCRIBE/DISCONNECT are encoded and
// CONNACK/SUBACK decoded with mqtt-packet; the hot packets (PUBLISH and the 4-byte acks) are
// encoded from a per-topic template and decoded in place, because mqtt-packet's parser tops out
// near 400,000 packets/s on this machine and would saturate the generator before the broker.
import mqttPacket from 'mqtt-packet';

export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const SUBACK = 9;

/** Benchmark payload: [u32 stream][u32 seq][f64 monotonic send time in ns] + zero padding. */
export const PAYLOAD_BYTES = 64;

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export function encodeConnect(clientId: string, clean: boolean): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean, keepalive: 0 });
}

export function encodeSubscribe(messageId: number, topic: string, qos: 0 | 1 | 2): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
}

/** PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP for `id`. */
export function encodeAck(type: number, id: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = (type << 4) | (type === PUBREL ? 0x02 : 0);
  b[1] = 2;
  b.writeUInt16BE(id, 2);
  return b;
}

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    out.push(d);
  } while (n > 0);
  return out;
}

/** A PUBLISH template for one topic and QoS; `make` copies it and fills id, stream, seq and time. */
export class PublishTemplate {
  readonly #tpl: Buffer;
  readonly #idAt: number;
  readonly #payloadAt: number;

  constructor(topic: string, qos: 0 | 1 | 2) {
    const t = Buffer.from(topic);
    const remaining = 2 + t.length + (qos > 0 ? 2 : 0) + PAYLOAD_BYTES;
    const head = [0x30 | (qos << 1), ...varint(remaining)];
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

/** `start`..`end` is the packet body (after the fixed header); `head` is where the packet begins. */
export type PacketHandler = (type: number, flags: number, buf: Buffer, start: number, end: number, head: number) => void;

/** Splits a byte stream into MQTT packets (packets may span chunks; chunks may hold many packets). */
export class Framer {
  #rest: Buffer | null = null;

  push(chunk: Buffer, onPacket: PacketHandler): void {
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
      onPacket(h >> 4, h & 0x0f, b, p, p + len, off);
      off = p + len;
    }
    if (off < n) this.#rest = b.subarray(off);
  }
}

const controlParser = mqttPacket.parser({ protocolVersion: 4 });
let parsed: mqttPacket.Packet | undefined;
controlParser.on('packet', (p: mqttPacket.Packet) => { parsed = p; });
controlParser.on('error', () => { parsed = undefined; });

/** Decode one complete non-PUBLISH packet (CONNACK, SUBACK, ...) with mqtt-packet. */
export function decodeControl(buf: Buffer, head: number, end: number): mqttPacket.Packet | undefined {
  parsed = undefined;
  controlParser.parse(Buffer.from(buf.subarray(head, end)));
  return parsed;
}
