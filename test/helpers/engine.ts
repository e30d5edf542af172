// The engine in-process for unit tests: a Broker on a MemoryStore that can be told to fail commits
// (a fake Store port, no monkey-patching), and clients on recording ByteChannels that speak real
// MQTT bytes (mqtt-packet). A "restart" is a new Broker loaded from the same store.
import mqttPacket, { type Packet } from 'mqtt-packet';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { Broker } from '../../src/broker/broker.ts';
import { EventBus } from '../../src/broker/events.ts';
import type { Connection } from '../../src/broker/connection.ts';
import { defaultBrokerOptions, type BrokerOptions } from '../../src/broker/options.ts';
import { systemClock, type ByteChannel, type Clock, type ChannelSink, type Logger, type Store, type UnitOfWork } from '../../src/broker/ports.ts';
import { allowAll, allowAnonymous, type Authenticator } from '../../src/auth/auth.ts';
import { MemoryStore } from '../../src/store/memory-store.ts';

type Op = { [K in keyof UnitOfWork]: { name: K; args: Parameters<UnitOfWork[K]> } }[keyof UnitOfWork];

/** A MemoryStore whose commits fail while `failWhen` says so for the unit's operations. */
export class FaultyStore implements Store {
  readonly kind = 'faulty-memory';
  readonly inner = new MemoryStore();
  /** Decide from a unit's operation names whether its commit fails (nothing of it is applied). */
  failWhen: ((ops: ReadonlyArray<Op['name']>) => boolean) | undefined;
  /** Units refused so far. */
  failed = 0;
  #healthy = true;

  get healthy(): boolean {
    return this.#healthy;
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {}
  load(): ReturnType<Store['load']> {
    return this.inner.load();
  }
  loadAccess(): ReturnType<Store['loadAccess']> {
    return this.inner.loadAccess();
  }
  queryAudit(q: Parameters<Store['queryAudit']>[0]): ReturnType<Store['queryAudit']> {
    return this.inner.queryAudit(q);
  }
  reserveIds(): ReturnType<Store['reserveIds']> {
    return this.inner.reserveIds();
  }
  get backlogUnits(): number {
    return this.inner.backlogUnits;
  }
  get backlogBytes(): number {
    return this.inner.backlogBytes;
  }
  whenBacklogBelow(): Promise<void> {
    return this.inner.whenBacklogBelow();
  }

  transaction(build: (tx: UnitOfWork) => void): Promise<void> {
    const ops: Op[] = [];
    const recorder = new Proxy({} as UnitOfWork, {
      get: (_t, name: string) => (...args: unknown[]) => { ops.push({ name, args } as Op); },
    });
    build(recorder);
    if (this.failWhen?.(ops.map((o) => o.name))) {
      this.failed++;
      this.#healthy = false;
      return Promise.reject(new Error('injected commit failure'));
    }
    this.#healthy = true;
    return this.inner.transaction((tx) => {
      for (const op of ops) (tx[op.name] as (...a: unknown[]) => void)(...op.args);
    });
  }
}

/** A FaultyStore whose commits can be held back: the data is applied, the promise waits for `release`. */
export class HeldStore extends FaultyStore {
  holding = false;
  readonly #held: Array<() => void> = [];

  override transaction(build: (tx: UnitOfWork) => void): Promise<void> {
    const done = super.transaction(build);
    if (!this.holding) return done;
    done.catch(() => undefined); // handled when released
    return new Promise((resolve, reject) => this.#held.push(() => done.then(resolve, reject)));
  }

  get heldCount(): number {
    return this.#held.length;
  }

  release(): void {
    this.holding = false;
    for (const r of this.#held.splice(0)) r();
  }
}

/** Log lines kept in memory. */
export class MemoryLogger implements Logger {
  readonly lines: Array<{ level: string; msg: string | undefined; obj: object }> = [];
  info(obj: object, msg?: string): void { this.lines.push({ level: 'info', msg, obj }); }
  warn(obj: object, msg?: string): void { this.lines.push({ level: 'warn', msg, obj }); }
  error(obj: object, msg?: string): void { this.lines.push({ level: 'error', msg, obj }); }
  debug(obj: object, msg?: string): void { this.lines.push({ level: 'debug', msg, obj }); }
}

/** Start a broker on `store` (load and restore included), its events written to the store's audit log as in main.ts. */
export async function startEngine(
  store: Store, options: Partial<BrokerOptions> = {}, clock: Clock = systemClock, authenticator: Authenticator = allowAnonymous,
): Promise<{ broker: Broker; logger: MemoryLogger }> {
  const logger = new MemoryLogger();
  const events = new EventBus(logger);
  events.subscribe(new AuditLog(store, clock, logger));
  const broker = new Broker({
    options: { ...defaultBrokerOptions, ...options }, store, clock, logger, authenticator, authorizer: allowAll, events,
  });
  await broker.start();
  return { broker, logger };
}

/** A ByteChannel that decodes what the broker writes. `buffered` stands for unflushed transport bytes. */
class RecordingChannel implements ByteChannel {
  readonly transport = 'tcp' as const;
  readonly remoteAddress = '127.0.0.1';
  sink: ChannelSink | undefined;
  buffered = 0;
  closed = false;
  /** Every write, as the broker made it (for byte-exact comparisons with the codec fixtures). */
  readonly written: Buffer[] = [];
  readonly #parser: ReturnType<typeof mqttPacket.parser>;
  readonly #onClose: () => void;
  constructor(version: 4 | 5, onPacket: (p: Packet) => void, onClose: () => void) {
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on('packet', onPacket);
    this.#onClose = onClose;
  }
  write(bytes: Buffer): boolean {
    if (this.closed) return false;
    this.written.push(Buffer.from(bytes));
    this.#parser.parse(bytes);
    return true;
  }
  bufferedBytes(): number {
    return this.buffered;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#onClose();
    queueMicrotask(() => this.sink?.channelClosed());
  }
}

/** One client connection to an in-process broker. */
export class EngineClient {
  readonly version: 4 | 5;
  readonly channel: RecordingChannel;
  readonly conn: Connection;
  readonly packets: Packet[] = [];
  /** Acknowledge every QoS 1 PUBLISH as it arrives. */
  autoAck = false;
  readonly #waiters = new Set<() => void>();

  constructor(broker: Broker, version: 4 | 5, hub = 'default') {
    this.version = version;
    const wake = (): void => { for (const w of [...this.#waiters]) w(); };
    this.channel = new RecordingChannel(version, (p) => {
      this.packets.push(p);
      if (this.autoAck && p.cmd === 'publish' && p.qos === 1) {
        const messageId = p.messageId!;
        queueMicrotask(() => this.send({ cmd: 'puback', messageId, reasonCode: 0 } as Packet));
      }
      wake();
    }, wake);
    this.conn = broker.accept(this.channel, { hub, upgradeToken: undefined })!;
  }

  get closed(): boolean {
    return this.channel.closed;
  }

  send(p: Packet): void {
    this.conn.channelData(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  /** Resolve with the first packet (from index `from` on) for which `pred` holds. */
  waitFor(pred: (p: Packet) => boolean, what: string, from = 0, timeoutMs = 5000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.packets.slice(from).find(pred);
        if (found) {
          done();
          resolve(found);
        } else if (this.closed) {
          done();
          reject(new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(this.packets.map((p) => p.cmd))}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.packets.map((p) => p.cmd))}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Resolve once the broker closed the connection. */
  whenClosed(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('connection not closed')), timeoutMs);
      const check = (): void => {
        if (!this.closed) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** CONNECT and wait for the CONNACK. */
  async connect(clientId: string, opts: { clean?: boolean; expirySec?: number; receiveMaximum?: number } = {}): Promise<Extract<Packet, { cmd: 'connack' }>> {
    const from = this.packets.length;
    const properties: Record<string, number> = {};
    if (opts.expirySec !== undefined) properties['sessionExpiryInterval'] = opts.expirySec;
    if (opts.receiveMaximum !== undefined) properties['receiveMaximum'] = opts.receiveMaximum;
    this.send({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clean: opts.clean ?? false, keepalive: 0, clientId,
      ...(this.version === 5 && Object.keys(properties).length > 0 ? { properties } : {}),
    });
    return await this.waitFor((p) => p.cmd === 'connack', 'CONNACK', from) as Extract<Packet, { cmd: 'connack' }>;
  }

  /** SUBSCRIBE and wait for the SUBACK. */
  async subscribe(messageId: number, topic: string, qos: 0 | 1 | 2, extra: Record<string, unknown> = {}): Promise<Extract<Packet, { cmd: 'suback' }>> {
    const from = this.packets.length;
    this.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos, ...extra }] } as Packet);
    return await this.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, 'SUBACK', from) as Extract<Packet, { cmd: 'suback' }>;
  }

  /** Publishes received so far. */
  get publishes(): Array<Extract<Packet, { cmd: 'publish' }>> {
    return this.packets.filter((p): p is Extract<Packet, { cmd: 'publish' }> => p.cmd === 'publish');
  }

  // Raw bytes in and out, for rows of the codec fixture table (test/unit/mqtt/codec-fixtures.ts)
  /** Feed bytes to the broker as the network would deliver them. */
  sendBytes(bytes: Buffer): void {
    this.conn.channelData(bytes);
  }

  /** Everything the broker has written to this client, in order, as one buffer. */
  get bytesOut(): Buffer {
    return Buffer.concat(this.channel.written);
  }

  /** Drop the connection (network failure). */
  drop(): void {
    this.channel.closed = true;
    this.conn.channelClosed();
  }
}
