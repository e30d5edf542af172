// A raw MQTT publisher that keeps a window of QoS 1 publishes in flight and records which were
// acknowledged with success and which failed (reason code >= 0x80 or no answer).
import assert from 'node:assert/strict';
import type { Packet } from 'mqtt-packet';
import type { BrokerProcess } from './broker-process.ts';
import { uniqueId, type Version } from './clients.ts';
import { connackCode } from './mqtt-wire.ts';
import { RawPeer } from './raw-peer.ts';

/** A publisher keeping `window` QoS 1 publishes in flight, recording what was acknowledged with success. */
export class LoadPublisher {
  peer!: RawPeer;
  readonly acked: string[] = [];
  readonly failed: string[] = [];
  #next = 0;
  #running = false;
  #inflight = 0;
  #stopped: (() => void) | undefined;
  constructor(readonly name: string, readonly version: Version, readonly topic: string, readonly window = 10) {}

  async connect(broker: BrokerProcess): Promise<void> {
    this.peer = await RawPeer.open(broker, 'tcp', this.version, { log: false });
    assert.equal(connackCode(await this.peer.connect({ clientId: uniqueId(this.name), clean: true })), 0);
  }

  start(): void {
    this.#running = true;
    for (let i = 0; i < this.window; i++) this.#one();
  }

  /** Stop publishing and wait for every publish in flight to be answered. */
  async stop(timeoutMs: number): Promise<void> {
    this.#running = false;
    if (this.#inflight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => { this.#stopped = r; }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.name}: ${this.#inflight} publishes unanswered ${timeoutMs} ms after the load stopped`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  #one(): void {
    if (!this.#running || this.peer.isClosed) return;
    const n = this.#next++;
    const payload = `${this.name}-${n}`;
    const messageId = (n % 60000) + 1;
    this.#inflight++;
    this.peer.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, payload, 120_000).then((p) => {
      const rc = (p as Extract<Packet, { cmd: 'puback' }>).reasonCode ?? 0;
      (rc === 0 ? this.acked : this.failed).push(payload);
    }, () => { this.failed.push(payload); }).finally(() => {
      this.#inflight--;
      if (this.#inflight === 0 && !this.#running) this.#stopped?.();
      setTimeout(() => this.#one(), 2);
    });
    this.peer.sendPacket({ cmd: 'publish', topic: this.topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, messageId });
  }
}

