// The one raw MQTT peer of the tests and the benchmark: a TCP or WebSocket connection that sends
// bytes or packets as given (3.1.1 or 5.0) and hands every packet the broker sends to listeners
// and, unless turned off, to a PacketLog. The benchmark reads hot frames in place (`onFrame`) and
// batches its writes (`queue`). No protocol logic: the caller decides every acknowledgement.
import net from 'node:net';
import type { IConnackPacket, IConnectPacket, ISubackPacket, Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import type { Transport, Version } from './clients.ts';
import { connackCode, decodeFrame, DISCONNECT, encode, Framer, hex, type FrameHandler } from './mqtt-wire.ts';
import { PacketLog } from './packet-log.ts';

/** Where a broker listens (a BrokerProcess fits). */
export interface PeerTarget {
  host: string;
  mqttPort: number;
  wsUrl(hub?: string): string;
}

export interface PeerOptions {
  /** Keep every packet and byte received in `log` (default true); long-running load peers turn it off. */
  log?: boolean;
  /** WebSocket: this hub's endpoint instead of `/mqtt`. */
  hub?: string;
  /** Give up opening the connection after this long. */
  timeoutMs?: number;
  /** A load generator's WebSocket: all-zero masking key (legal, and `ws` then skips masking), no compression offer. */
  fast?: boolean;
}

/** Sees a frame before it is decoded; returns true when it consumed it (see Framer for the arguments). */
export type RawFrameHandler = (type: number, flags: number, buf: Buffer, start: number, end: number, head: number) => boolean;

const zeroMask = (m: Uint8Array): void => { m[0] = 0; m[1] = 0; m[2] = 0; m[3] = 0; };

/** One raw connection to a broker. */
export class RawPeer {
  readonly transport: Transport;
  readonly version: Version;
  /** Frames mqtt-packet could not decode (the broker sent something wrong). */
  readonly decodeErrors: Error[] = [];
  /** Sees every frame first: the benchmark reads PUBLISH and acks in place rather than decoding them. */
  onFrame: RawFrameHandler | undefined = undefined;
  readonly #log: PacketLog | undefined;
  readonly #framer = new Framer();
  readonly #listeners = new Set<(p: Packet) => void>();
  readonly #closeListeners = new Set<() => void>();
  #closed = false;
  #ws: WebSocket | undefined;
  #socket!: net.Socket;
  #out: Buffer[] = [];
  #flushScheduled = false;

  private constructor(transport: Transport, version: Version, keepLog: boolean) {
    this.transport = transport;
    this.version = version;
    this.#log = keepLog ? new PacketLog(version) : undefined;
  }

  /** Open the network connection (no CONNECT yet); `version` selects how packets are encoded and decoded. */
  static async open(target: PeerTarget, transport: Transport, version: Version = 4, opts: PeerOptions = {}): Promise<RawPeer> {
    const peer = new RawPeer(transport, version, opts.log ?? true);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    if (transport === 'tcp') {
      const socket = net.connect({ port: target.mqttPort, host: target.host, noDelay: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { socket.destroy(); reject(new Error(`TCP connect timed out after ${timeoutMs} ms`)); }, timeoutMs);
        socket.once('connect', () => { clearTimeout(timer); resolve(); });
        socket.once('error', (e) => { clearTimeout(timer); reject(e); });
      });
      socket.on('data', peer.#onChunk);
      socket.on('error', () => undefined);
      socket.on('close', () => peer.#markClosed());
      peer.#socket = socket;
    } else {
      const ws = new WebSocket(target.wsUrl(opts.hub), ['mqtt'], {
        handshakeTimeout: timeoutMs,
        ...(opts.fast ? { perMessageDeflate: false, skipUTF8Validation: true, generateMask: zeroMask } : {}),
      });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      ws.on('message', (data: WebSocket.RawData) => {
        peer.#onChunk(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data));
      });
      ws.on('error', () => undefined);
      ws.on('close', () => peer.#markClosed());
      peer.#ws = ws;
      peer.#socket = (ws as unknown as { _socket: net.Socket })._socket;
    }
    return peer;
  }

  /** Open, send CONNECT and wait for a successful CONNACK (which `next` skips); rejects on a refusal. */
  static async connected(
    target: PeerTarget, transport: Transport, version: Version, c: Partial<IConnectPacket> & { clientId: string }, opts: PeerOptions = {},
  ): Promise<RawPeer> {
    const peer = await RawPeer.open(target, transport, version, opts);
    const connack = await peer.connect(c);
    if (connackCode(connack) !== 0) throw new Error(`CONNACK refused: ${connackCode(connack)}`);
    return peer;
  }

  /** Every packet and byte received (throws if the peer was opened with `log: false`). */
  get log(): PacketLog {
    if (!this.#log) throw new Error('this peer keeps no log (opened with log: false)');
    return this.#log;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  readonly #onChunk = (chunk: Buffer): void => {
    this.#log?.record(chunk);
    this.#framer.push(chunk, this.#onFrame);
  };

  readonly #onFrame: FrameHandler = (type, flags, buf, start, end, head) => {
    if (this.onFrame !== undefined && this.onFrame(type, flags, buf, start, end, head)) return;
    const p = decodeFrame(this.version, buf, head, end);
    if (p instanceof Error) {
      this.decodeErrors.push(p);
      this.#log?.addError(p);
      return;
    }
    this.#log?.add(p);
    if (this.#listeners.size > 0) for (const l of [...this.#listeners]) l(p);
  };

  #markClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log?.markClosed();
    for (const l of [...this.#closeListeners]) l();
  }

  #write(b: Buffer): void {
    if (this.#ws) {
      if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(b);
    } else if (!this.#socket.destroyed) {
      this.#socket.write(b);
    }
  }

  /** Send bytes as they are, at once (a hex string may contain spaces). */
  send(bytes: Buffer | string): void {
    this.#write(typeof bytes === 'string' ? hex(bytes) : bytes);
  }

  /** Encode a packet with mqtt-packet for this peer's protocol version and send it. */
  sendPacket(packet: Packet): void {
    this.#write(encode(packet, this.version));
  }

  /** Send on the next tick, with everything else queued until then: one WebSocket frame per buffer, one syscall for the lot. */
  queue(bytes: Buffer): void {
    this.#out.push(bytes);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const out = this.#out;
    this.#out = [];
    if (this.#closed || out.length === 0) return;
    if (this.#ws) {
      this.#socket.cork();
      for (const b of out) this.#ws.send(b);
      this.#socket.uncork();
    } else {
      this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    }
  };

  /** Bytes written but not yet handed to the kernel. */
  buffered(): number {
    return this.#ws ? this.#ws.bufferedAmount : this.#socket.writableLength;
  }

  onDrainOnce(cb: () => void): void {
    this.#socket.once('drain', cb);
  }

  /** Call `fn` for every decoded packet from now on; returns the function that stops it. */
  on(fn: (p: Packet) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Call `fn` once the connection is closed (at once if it is). */
  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#closeListeners.add(fn);
  }

  /** The next packet (from now on) for which `pred` holds; rejects on close or after `timeoutMs`. */
  waitFor(pred: (p: Packet) => boolean, what: string, timeoutMs = 5000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        stop();
        this.#closeListeners.delete(onClose);
      };
      const stop = this.on((p) => {
        if (!pred(p)) return;
        finish();
        resolve(p);
      });
      const onClose = (): void => {
        finish();
        reject(new Error(`connection closed while waiting for ${what}`));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.onClose(onClose);
    });
  }

  /** The next packet not read yet, in arrival order (see PacketLog.next). */
  next(timeoutMs = 5000): Promise<Packet> {
    return this.log.next(timeoutMs);
  }

  /** Resolve once the connection is closed, with the packets `next` has not read (none without a log). */
  async closed(timeoutMs = 5000): Promise<Packet[]> {
    if (this.#log) {
      await this.#log.whenClosed(timeoutMs);
      return this.#log.unread();
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
      this.onClose(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return [];
  }

  /**
   * Send CONNECT (clean, keep alive 0 unless given) and resolve with the CONNACK, which `next` then
   * skips. Listeners added before see every packet after it (a resumed session sends right away).
   */
  async connect(c: Partial<IConnectPacket> & { clientId: string }, timeoutMs = 5000): Promise<IConnackPacket> {
    const connack = this.waitFor((p) => p.cmd === 'connack', 'CONNACK', timeoutMs);
    this.sendPacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clean: true, keepalive: 0, ...c });
    const p = (await connack) as IConnackPacket;
    this.#log?.markRead(p);
    return p;
  }

  /** SUBSCRIBE to one filter and resolve with the SUBACK. */
  async subscribe(topicFilter: string, qos: 0 | 1 | 2, opts: { messageId?: number; timeoutMs?: number } = {}): Promise<ISubackPacket> {
    const messageId = opts.messageId ?? 1;
    const suback = this.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, `SUBACK for ${topicFilter}`, opts.timeoutMs);
    this.sendPacket({ cmd: 'subscribe', messageId, subscriptions: [{ topic: topicFilter, qos }] });
    return (await suback) as ISubackPacket;
  }

  /** Send DISCONNECT (after anything queued), then close the connection from this side. */
  disconnect(): void {
    if (this.#closed) return;
    this.queue(DISCONNECT);
    process.nextTick(() => {
      if (this.#ws) this.#ws.close(1000);
      else this.#socket.end();
    });
  }

  /** Drop the connection without DISCONNECT (a network failure, for the broker); closed at once for this side. */
  destroy(): void {
    if (this.#ws) this.#ws.terminate();
    else this.#socket.destroy();
    this.#markClosed();
  }
}
