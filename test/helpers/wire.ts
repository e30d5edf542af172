// Packet-level test clients: a raw TCP MQTT client that encodes with mqtt-packet and decodes
// every packet the broker sends, and a tap that decodes what an MQTT.js client receives on the
// wire (before MQTT.js resolves topic aliases or acknowledges anything).
import mqttPacket from 'mqtt-packet';
import type { IConnectPacket, Packet } from 'mqtt-packet';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import type { Readable } from 'node:stream';
import type { BrokerProcess } from './broker-process.ts';
import { uniqueId, type Transport } from './clients.ts';
import { rawConnect, type RawClient } from './raw.ts';

export type Version = 4 | 5;

/** Encode one packet for `version` (client-to-server packets, or deliberately wrong ones). */
export function encode(packet: Packet, version: Version): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** Packets decoded from a byte stream, awaitable one by one. */
export class PacketLog {
  readonly packets: Packet[] = [];
  closed = false;
  #waiters: Array<() => void> = [];
  readonly #parser: ReturnType<typeof mqttPacket.parser>;

  constructor(version: Version) {
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on('packet', (p: Packet) => {
      this.packets.push(p);
      this.#wake();
    });
    this.#parser.on('error', (e: Error) => {
      this.packets.push({ cmd: 'parse-error', error: e } as unknown as Packet);
      this.#wake();
    });
  }

  push(bytes: Buffer): void {
    this.#parser.parse(bytes);
  }

  markClosed(): void {
    this.closed = true;
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Packets of one kind received so far. */
  of<C extends Packet['cmd']>(cmd: C): Array<Extract<Packet, { cmd: C }>> {
    return this.packets.filter((p) => p.cmd === cmd) as Array<Extract<Packet, { cmd: C }>>;
  }

  /** Resolve once `done()` holds; reject after `timeoutMs` (or at close, unless `done` accepts that). */
  until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (done()) {
          finish();
          resolve();
        } else if (this.closed) {
          finish();
          reject(new Error(`connection closed while waiting for ${what}; got ${this.describe()}`));
        }
      };
      const finish = (): void => {
        clearTimeout(timer);
        const i = this.#waiters.indexOf(check);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for ${what}; got ${this.describe()}`));
      }, timeoutMs);
      this.#waiters.push(check);
      check();
    });
  }

  /** The first packet of kind `cmd` (already received or the next one). */
  async next<C extends Packet['cmd']>(cmd: C, timeoutMs = 5000): Promise<Extract<Packet, { cmd: C }>> {
    await this.until(() => this.of(cmd).length > 0, cmd, timeoutMs);
    return this.of(cmd)[0]!;
  }

  /** Resolve with the count of `cmd` packets once `n` have arrived. */
  async count(cmd: Packet['cmd'], n: number, timeoutMs = 5000): Promise<void> {
    await this.until(() => this.of(cmd).length >= n, `${n} × ${cmd}`, timeoutMs);
  }

  /** Resolve once the connection is closed (with every packet received before). */
  async whenClosed(timeoutMs = 5000): Promise<Packet[]> {
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!this.closed) return;
        clearTimeout(timer);
        this.#waiters.splice(this.#waiters.indexOf(check), 1);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(check), 1);
        reject(new Error(`connection not closed within ${timeoutMs} ms; got ${this.describe()}`));
      }, timeoutMs);
      this.#waiters.push(check);
      check();
    });
    return this.packets;
  }

  describe(): string {
    return JSON.stringify(this.packets.map((p) => ('reasonCode' in p ? `${p.cmd}:0x${Number(p.reasonCode).toString(16)}` : p.cmd)));
  }
}

export interface WireClient {
  raw: RawClient;
  log: PacketLog;
  version: Version;
  send(packet: Packet): void;
  sendBytes(bytes: Buffer | string): void;
  end(): void;
}

/** Open a raw TCP connection that decodes the broker's packets as `version`. No CONNECT is sent. */
export async function wireOpen(port: number, version: Version): Promise<WireClient> {
  const raw = await rawConnect(port);
  const log = new PacketLog(version);
  raw.socket.on('data', (b: Buffer) => log.push(b));
  raw.socket.on('close', () => log.markClosed());
  return {
    raw, log, version,
    send: (p) => raw.send(encode(p, version)),
    sendBytes: (b) => raw.send(b),
    end: () => raw.end(),
  };
}

/** Open a raw TCP connection, send CONNECT and wait for a successful CONNACK. */
export async function wireConnect(
  port: number, version: Version, connect: Partial<IConnectPacket> & { clientId: string },
): Promise<WireClient> {
  const c = await wireOpen(port, version);
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, ...connect });
  const connack = await c.log.next('connack');
  const rc = version === 5 ? connack.reasonCode : connack.returnCode;
  if (rc !== 0) throw new Error(`CONNACK refused: ${rc}`);
  return c;
}

/** Decode everything an MQTT.js client receives, from now on. */
export function tap(client: MqttClient): PacketLog {
  const version = (client.options.protocolVersion === 5 ? 5 : 4) as Version;
  const log = new PacketLog(version);
  const stream = client.stream as unknown as Readable;
  stream.on('data', (b: Buffer | Uint8Array) => log.push(Buffer.from(b)));
  stream.once('close', () => log.markClosed());
  return log;
}

/** Write raw bytes on an MQTT.js client's connection, bypassing MQTT.js. */
export function writeRaw(client: MqttClient, bytes: Buffer): void {
  (client.stream as unknown as { write(b: Buffer): boolean }).write(bytes);
}

/** Resolve after `ms` (only to prove that something does not happen). */
export function quietFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Start an MQTT.js client without waiting for CONNACK, so that listeners can be attached before
 * anything is received (a resumed session delivers right after CONNACK). `connack` rejects if
 * the connection is refused or closes first.
 */
export function startClient(
  broker: BrokerProcess, transport: Transport, version: Version, opts: IClientOptions = {},
): { client: MqttClient; connack: Promise<IConnackPacket> } {
  const url = transport === 'tcp' ? broker.mqttUrl : broker.wsUrl();
  const client = mqtt.connect(url, { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 5000, clientId: uniqueId(), ...opts });
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    const onConnect = (p: IConnackPacket): void => { cleanup(); resolve(p); };
    const onError = (e: Error): void => { cleanup(); reject(e); };
    const onClose = (): void => { cleanup(); reject(new Error('connection closed before CONNACK')); };
    const cleanup = (): void => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
    };
    client.on('connect', onConnect);
    client.on('error', onError);
    client.on('close', onClose);
  });
  return { client, connack };
}
