// The packets and bytes one connection received, kept in order, to await and inspect: filled by a
// RawPeer, or fed the bytes of someone else's connection (`tap` on an MQTT.js client).
import type { Packet } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import type { Readable } from 'node:stream';
import type { Version } from './clients.ts';
import { decodeFrame, Framer } from './mqtt-wire.ts';

/** Everything received on one connection; `next` reads it in order, the rest query it as a whole. */
export class PacketLog {
  readonly version: Version;
  readonly packets: Packet[] = [];
  /** Frames mqtt-packet could not decode (the broker sent something wrong). */
  readonly errors: Error[] = [];
  closed = false;
  #chunks: Buffer[] = [];
  /** Packets before this index were returned by `next` (or were the CONNACK of `RawPeer.connect`). */
  #read = 0;
  #errorsSeen = 0;
  readonly #waiters = new Set<() => void>();
  #framer: Framer | undefined;

  constructor(version: Version) {
    this.version = version;
  }

  /** Bytes as received on a connection: kept, split into frames and decoded here. */
  push(bytes: Buffer): void {
    this.record(bytes);
    (this.#framer ??= new Framer()).push(bytes, (_type, _flags, buf, _start, end, head) => {
      const p = decodeFrame(this.version, buf, head, end);
      if (p instanceof Error) this.addError(p);
      else this.add(p);
    });
  }

  /** Keep received bytes (a RawPeer decodes them itself). */
  record(bytes: Buffer): void {
    this.#chunks.push(bytes);
  }

  add(packet: Packet): void {
    this.packets.push(packet);
    this.#wake();
  }

  addError(error: Error): void {
    this.errors.push(error);
    this.#wake();
  }

  markClosed(): void {
    this.closed = true;
    this.#wake();
  }

  /** Count `packet` and everything before it as read by `next`. */
  markRead(packet: Packet): void {
    const i = this.packets.indexOf(packet);
    if (i >= this.#read) this.#read = i + 1;
  }

  /** Every byte received so far. */
  get bytes(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  /** Packets of one kind received so far. */
  of<C extends Packet['cmd']>(cmd: C): Array<Extract<Packet, { cmd: C }>> {
    return this.packets.filter((p) => p.cmd === cmd) as Array<Extract<Packet, { cmd: C }>>;
  }

  /** Resolve once `done()` holds; reject after `timeoutMs`, or at the close unless `done` accepts that. */
  until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return this.#wait(() => {
      if (done()) return true;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}; got ${this.describe()}`);
      return undefined;
    }, what, timeoutMs).then(() => undefined);
  }

  /** The first packet of kind `cmd` (already received or the next one). */
  async first<C extends Packet['cmd']>(cmd: C, timeoutMs = 5000): Promise<Extract<Packet, { cmd: C }>> {
    await this.until(() => this.of(cmd).length > 0, cmd, timeoutMs);
    return this.of(cmd)[0]!;
  }

  /** Resolve once `n` packets of kind `cmd` have arrived. */
  async count(cmd: Packet['cmd'], n: number, timeoutMs = 5000): Promise<void> {
    await this.until(() => this.of(cmd).length >= n, `${n} × ${cmd}`, timeoutMs);
  }

  /** The next packet `next` has not returned yet, in arrival order; rejects on a decode error, the close or a timeout. */
  next(timeoutMs = 5000): Promise<Packet> {
    return this.#wait(() => {
      if (this.#read < this.packets.length) return this.packets[this.#read++]!;
      if (this.#errorsSeen < this.errors.length) throw this.errors[this.#errorsSeen++]!;
      if (this.closed) throw new Error(`connection closed while waiting for a packet; received ${this.bytes.toString('hex') || 'nothing'}`);
      return undefined;
    }, 'a packet', timeoutMs);
  }

  /** The packets `next` has not returned yet; they count as read from now on. */
  unread(): Packet[] {
    const rest = this.packets.slice(this.#read);
    this.#read = this.packets.length;
    return rest;
  }

  /** Resolve once the connection is closed, with every packet received; rejects if a frame could not be decoded. */
  whenClosed(timeoutMs = 5000): Promise<Packet[]> {
    return this.#wait(() => {
      if (!this.closed) return undefined;
      if (this.errors.length > 0) throw new Error(`the broker sent undecodable frames: ${this.describe()}`);
      return this.packets;
    }, 'the close', timeoutMs);
  }

  describe(): string {
    const packets = this.packets.map((p) => ('reasonCode' in p ? `${p.cmd}:0x${Number(p.reasonCode).toString(16)}` : p.cmd));
    return JSON.stringify(packets) + (this.errors.length ? ` and undecodable frames: ${this.errors.map((e) => e.message).join('; ')}` : '');
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Settle once `ready` returns a value (or throws), or reject after `timeoutMs`. */
  #wait<T>(ready: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const check = (): void => {
        let value: T | undefined;
        try {
          value = ready();
        } catch (e) {
          finish();
          reject(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        if (value === undefined) return;
        finish();
        resolve(value);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.describe()}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

/** Decode everything an MQTT.js client receives from now on (before MQTT.js resolves aliases or acknowledges). */
export function tap(client: MqttClient): PacketLog {
  const log = new PacketLog(client.options.protocolVersion === 5 ? 5 : 4);
  const stream = client.stream as unknown as Readable;
  stream.on('data', (b: Buffer | Uint8Array) => log.push(Buffer.from(b)));
  stream.once('close', () => log.markClosed());
  return log;
}

/** Write raw bytes on an MQTT.js client's connection, bypassing MQTT.js. */
export function writeRaw(client: MqttClient, bytes: Buffer): void {
  (client.stream as unknown as { write(b: Buffer): boolean }).write(bytes);
}
