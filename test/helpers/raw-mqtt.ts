// A byte-level MQTT client over TCP or WebSocket for conformance tests: send raw bytes or
// generated packets, read the broker's replies as decoded packets, see the close. No protocol logic.
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import WebSocket from 'ws';
import type { BrokerProcess } from './broker-process.ts';
import type { Transport, Version } from './clients.ts';

/** One raw connection to the broker. */
export interface RawMqtt {
  readonly transport: Transport;
  /** Send bytes as they are (a hex string may contain spaces). */
  send(bytes: string | Buffer): void;
  /** Encode a packet with mqtt-packet for this connection's protocol version and send it. */
  sendPacket(packet: Packet): void;
  /** The next decoded packet from the broker; rejects on close or after `timeoutMs`. */
  next(timeoutMs?: number): Promise<Packet>;
  /** Resolve once the broker closed the connection, with the packets not yet read by `next`. */
  closed(timeoutMs?: number): Promise<Packet[]>;
  /** Every byte received so far. */
  readonly bytes: Buffer;
  readonly isClosed: boolean;
  /** Drop the connection without DISCONNECT (a network failure, for the broker). */
  end(): void;
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Open a raw connection over `transport`; `version` selects how replies are decoded. */
export async function openRaw(broker: BrokerProcess, transport: Transport, version: Version = 4): Promise<RawMqtt> {
  let received = Buffer.alloc(0);
  let isClosed = false;
  const queue: Packet[] = [];
  const waiters = new Set<() => void>();
  const wake = (): void => { for (const w of [...waiters]) w(); };
  const parser = mqttPacket.parser({ protocolVersion: version });
  let parseError: Error | undefined;
  parser.on('packet', (p: Packet) => { queue.push(p); });
  parser.on('error', (e: Error) => { parseError = e; });
  const onBytes = (b: Buffer): void => {
    received = Buffer.concat([received, b]);
    parser.parse(b);
    wake();
  };
  const onClose = (): void => {
    isClosed = true;
    wake();
  };

  let write: (b: Buffer) => void;
  let destroy: () => void;
  if (transport === 'tcp') {
    const socket = net.connect(broker.mqttPort, broker.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('data', onBytes);
    socket.on('error', () => undefined);
    socket.on('close', onClose);
    write = (b) => { if (!socket.destroyed) socket.write(b); };
    destroy = () => socket.destroy();
  } else {
    const ws = new WebSocket(broker.wsUrl(), ['mqtt']);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      onBytes(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer));
    });
    ws.on('error', () => undefined);
    ws.on('close', onClose);
    write = (b) => { if (ws.readyState === WebSocket.OPEN) ws.send(b); };
    destroy = () => ws.terminate();
  }

  /** Settle once `ready` returns a result (or throws), or reject after `timeoutMs`. */
  const wait = <T>(ready: () => T | undefined, timeoutMs: number, what: string): Promise<T> => new Promise((resolve, reject) => {
    const check = (): void => {
      let value: T | undefined;
      try {
        value = ready();
      } catch (e) {
        clearTimeout(timer);
        waiters.delete(check);
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (value === undefined) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(value);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`timed out waiting for ${what}; received ${received.toString('hex') || 'nothing'}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });

  return {
    transport,
    send: (b) => write(typeof b === 'string' ? hex(b) : b),
    sendPacket: (p) => write(mqttPacket.generate(p, { protocolVersion: version })),
    next: (timeoutMs = 3000) => wait(() => {
      if (queue.length > 0) return queue.shift()!;
      if (parseError) throw parseError;
      if (isClosed) throw new Error(`connection closed; received ${received.toString('hex') || 'nothing'}`);
      return undefined;
    }, timeoutMs, 'a packet'),
    closed: (timeoutMs = 3000) => wait(() => (isClosed ? queue.splice(0) : undefined), timeoutMs, 'the close'),
    get bytes() { return received; },
    get isClosed() { return isClosed; },
    end: destroy,
  };
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
  /** Bytes appended after the client id (will, user name, password). */
  tail?: string;
}

function str(s: string): string {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return len.toString('hex') + b.toString('hex');
}

function varInt(n: number): string {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out).toString('hex');
}

/** A CONNECT packet built byte by byte, so that tests can make it wrong in exactly one place. */
export function connectBytes(spec: ConnectSpec = {}): Buffer {
  const level = spec.level ?? 4;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(spec.keepAlive ?? 0);
  const props = level === 5 ? varInt((spec.properties ?? '').replace(/\s+/g, '').length / 2) + (spec.properties ?? '') : '';
  const body = str(spec.protocolName ?? 'MQTT') + Buffer.from([level, spec.flags ?? 0x02]).toString('hex') + ka.toString('hex')
    + props + str(spec.clientId ?? 'raw') + (spec.tail ?? '');
  const bodyBytes = hex(body);
  return Buffer.concat([hex(`10${varInt(bodyBytes.length)}`), bodyBytes]);
}

/** A UTF-8 string as MQTT hex (two-byte length, then bytes), for `ConnectSpec.tail`. */
export const mqttString = str;
