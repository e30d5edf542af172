// A raw MQTT peer over TCP or WebSocket for durability tests: every decoded packet goes to the
// listeners as it arrives (no buffering of the whole byte stream, so it copes with thousands of
// messages), and the test decides each acknowledgement itself. No protocol logic here.
import net from 'node:net';
import mqttPacket, { type IConnackPacket, type IConnectPacket, type Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import type { Transport, Version } from './clients.ts';

/** Where a broker listens (a BrokerProcess fits). */
export interface PeerTarget {
  host: string;
  mqttPort: number;
  wsUrl(hub?: string): string;
}

export class MqttPeer {
  readonly transport: Transport;
  readonly version: Version;
  closed = false;
  /** Packets that could not be decoded (the connection is useless after one). */
  parseErrors: Error[] = [];
  readonly #listeners = new Set<(p: Packet) => void>();
  readonly #closeListeners = new Set<() => void>();
  readonly #write: (b: Buffer) => void;
  readonly #destroy: () => void;

  private constructor(transport: Transport, version: Version, write: (b: Buffer) => void, destroy: () => void) {
    this.transport = transport;
    this.version = version;
    this.#write = write;
    this.#destroy = destroy;
  }

  /** Open the network connection (no CONNECT yet). */
  static async open(target: PeerTarget, transport: Transport, version: Version): Promise<MqttPeer> {
    const parser = mqttPacket.parser({ protocolVersion: version });
    let peer: MqttPeer | undefined;
    parser.on('packet', (p: Packet) => peer!.#deliver(p));
    parser.on('error', (e: Error) => { peer!.parseErrors.push(e); });
    const onClose = (): void => peer!.#markClosed();
    if (transport === 'tcp') {
      const socket = net.connect(target.mqttPort, target.host);
      socket.setNoDelay(true);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      peer = new MqttPeer(transport, version, (b) => { if (!socket.destroyed) socket.write(b); }, () => socket.destroy());
      socket.on('data', (b: Buffer) => parser.parse(b));
      socket.on('error', () => undefined);
      socket.on('close', onClose);
    } else {
      const ws = new WebSocket(target.wsUrl(), ['mqtt']);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      peer = new MqttPeer(transport, version, (b) => { if (ws.readyState === WebSocket.OPEN) ws.send(b); }, () => ws.terminate());
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
        parser.parse(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));
      });
      ws.on('error', () => undefined);
      ws.on('close', onClose);
    }
    return peer;
  }

  #deliver(p: Packet): void {
    for (const l of [...this.#listeners]) l(p);
  }

  #markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.#closeListeners]) l();
  }

  /** Call `fn` for every packet from now on; returns the function that stops it. */
  on(fn: (p: Packet) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Call `fn` once the connection is closed (at once if it is). */
  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.#closeListeners.add(fn);
  }

  send(p: Packet): void {
    this.#write(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  /** The next packet for which `pred` holds; rejects on close or after `timeoutMs`. */
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
      if (this.closed) onClose();
      else this.#closeListeners.add(onClose);
    });
  }

  /** Resolve once the connection is closed; reject after `timeoutMs`. */
  whenClosed(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        resolve();
        return;
      }
      const timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
      this.#closeListeners.add(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Send CONNECT and resolve with the CONNACK. Listeners added before calling this see every
   * packet that follows the CONNACK (a resumed session sends right after it).
   */
  async connect(c: Partial<IConnectPacket> & { clientId: string }, timeoutMs = 5000): Promise<IConnackPacket> {
    const connack = this.waitFor((p) => p.cmd === 'connack', 'CONNACK', timeoutMs);
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clean: true, keepalive: 0, ...c });
    return (await connack) as IConnackPacket;
  }

  /** Drop the connection without DISCONNECT. */
  destroy(): void {
    this.#destroy();
  }
}

/** The CONNACK's result code for either protocol version (0 is success). */
export function connackCode(p: IConnackPacket): number {
  return p.reasonCode ?? p.returnCode ?? -1;
}
