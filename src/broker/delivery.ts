// Delivery: one message on its way to one session, the per-session FIFO that holds deliveries
// not yet in flight, and the durable row of a delivery. Plain data; no I/O.
import type { Message, QoS } from '../mqtt/packet.ts';
import type { DeliveryRecord, DeliveryState } from './ports.ts';

/** One message on its way to one session. */
export interface Delivery {
  id: number;
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | undefined;
  shareKey: string | undefined;
  /** 0 until the delivery is sent. */
  packetId: number;
  state: DeliveryState;
}

/**
 * Deliveries and delivery records are created with `new`, not as object literals: on the durable
 * path they outlive a group commit, and V8 pretenures an object-literal site whose objects survive
 * young-generation collections (allocation-site pretenuring). It did so for some sites and not
 * others, run to run: old objects pointing at young ones cost write barriers and remembered sets,
 * and durable fan-in ran at 37–74k msg/s instead of 71–110k. Instances of a class have no
 * allocation site: they are promoted like any survivor, every run.
 */
export class QueuedDelivery implements Delivery {
  constructor(
    public id: number, public message: Message, public qos: QoS, public retain: boolean,
    public subscriptionIds: number[] | undefined, public shareKey: string | undefined,
    public packetId = 0, public state: DeliveryState = 'queued',
  ) {}
}

/** Per-dispatch cache of encoded PUBLISH variants, so fan-out encodes once per variant. */
export type EncodeCache = Map<string, Buffer>;

/** Whose delivery a row is: a session's hub name and client id. */
export interface DeliveryOwner {
  readonly hub: { readonly name: string };
  readonly clientId: string;
}

/** Durable-store row for a delivery. */
export function toDeliveryRecord(owner: DeliveryOwner, d: Delivery): DeliveryRecord {
  return new RoutedRecord(d.id, owner.hub.name, owner.clientId, d.message.id, d.qos, d.retain, d.subscriptionIds ?? NO_IDS, d.shareKey, d.packetId, d.state);
}

/** The subscription ids of a record that has none (shared; frozen: a push throws, typed number[] for DeliveryRecord). */
const NO_IDS: number[] = Object.freeze([]) as unknown as number[];

/** A delivery's durable row, as routing hands it to the store (a class: see QueuedDelivery). */
class RoutedRecord implements DeliveryRecord {
  constructor(
    public id: number, public hub: string, public clientId: string, public messageId: number, public qos: QoS, public retain: boolean,
    public subscriptionIds: number[], public shareKey: string | undefined, public packetId: number, public state: DeliveryState,
    public sentAhead = false,
  ) {}
}

/** Simple FIFO with O(1) shift. */
export class DeliveryQueue {
  #items: Delivery[] = [];
  #head = 0;
  /** Payload bytes of the queued deliveries. */
  bytes = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(d: Delivery): void {
    this.#items.push(d);
    this.bytes += d.message.payload.length;
  }
  unshift(d: Delivery): void {
    this.bytes += d.message.payload.length;
    if (this.#head > 0) this.#items[--this.#head] = d;
    else this.#items.unshift(d);
  }
  peek(): Delivery | undefined {
    return this.#items[this.#head];
  }
  shift(): Delivery | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const d = this.#items[this.#head++]!;
    this.bytes -= d.message.payload.length;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return d;
  }
  /** Remove and return the items matching `pred`. */
  extract(pred: (d: Delivery) => boolean): Delivery[] {
    const out: Delivery[] = [];
    const keep: Delivery[] = [];
    for (let i = this.#head; i < this.#items.length; i++) {
      const d = this.#items[i]!;
      (pred(d) ? out : keep).push(d);
    }
    this.#items = keep;
    this.#head = 0;
    for (const d of out) this.bytes -= d.message.payload.length;
    return out;
  }
  *[Symbol.iterator](): IterableIterator<Delivery> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i]!;
  }
}
