// Session: the state that outlives a network connection (MQTT 5 §4.1): subscriptions, queued and
// in-flight outbound deliveries, inbound QoS 2 ids awaiting PUBREL, the will and expiry.
import type { Message, ProtocolVersion, QoS } from '../mqtt/packet.ts';
import { PacketIdAllocator } from '../mqtt/session-state.ts';
import type { DeliveryRecord, DeliveryState, Timer, WillRecord } from './ports.ts';
import type { Connection } from './connection.ts';
import type { Hub } from './hub.ts';
import type { Target } from './router.ts';

/** A session's subscription to one filter (a shared one keeps its `$share/...` form in `key`). */
export interface Subscription {
  kind: 'subscription';
  session: Session;
  /** The filter as subscribed, e.g. `a/+` or `$share/g/a/+`. */
  key: string;
  /** The filter that is matched (without `$share/{group}/`). */
  topicFilter: string;
  shareName: string | undefined;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** The members of one `$share/{shareName}/{topicFilter}` group in a hub. */
export interface SharedGroup {
  kind: 'shared';
  /** `{shareName}/{topicFilter}`. */
  key: string;
  shareName: string;
  topicFilter: string;
  members: Subscription[];
  next: number;
}

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
 * Retained messages still to be sent for one subscription [MQTT-3.3.1-9]: a snapshot of the
 * matching messages at SUBSCRIBE, handed out a page at a time as the client takes them.
 */
export interface RetainedReplay {
  sub: Subscription;
  messages: Message[];
  /** Index of the next message to send. */
  next: number;
}

/** Per-dispatch cache of encoded PUBLISH variants, so fan-out encodes once per variant. */
export type EncodeCache = Map<string, Buffer>;

/** Durable-store row for a delivery. */
export function toDeliveryRecord(session: Session, d: Delivery): DeliveryRecord {
  return {
    id: d.id, hub: session.hub.name, clientId: session.clientId, messageId: d.message.id, qos: d.qos, retain: d.retain,
    subscriptionIds: d.subscriptionIds ?? [], shareKey: d.shareKey, packetId: d.packetId, state: d.state,
  };
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

/** The state of one client id in one hub. */
export class Session {
  readonly hub: Hub;
  readonly clientId: string;
  protocolVersion: ProtocolVersion;
  /** Stored durably: Session Expiry Interval > 0 (5.0) or clean session 0 (3.1.1). */
  persistent = false;
  /** Seconds the session outlives its connection; 0xFFFFFFFF never expires. */
  expiryIntervalSec = 0;
  readonly subscriptions = new Map<string, Subscription>();
  // The containers below are created on first use: an idle subscriber never needs them, and
  // they are most of what an idle connection would otherwise cost.
  #inflight: Map<number, Delivery> | undefined;
  #queue: DeliveryQueue | undefined;
  #inboundQos2: Set<number> | undefined;
  #packetIds: PacketIdAllocator | undefined;

  /** Sent QoS 1/2 deliveries by packet id. */
  get inflight(): Map<number, Delivery> {
    return (this.#inflight ??= new Map());
  }

  get queue(): DeliveryQueue {
    return (this.#queue ??= new DeliveryQueue());
  }

  /** Inbound QoS 2 packet ids whose PUBREL has not arrived [MQTT-4.3.3-8]. */
  get inboundQos2(): Set<number> {
    return (this.#inboundQos2 ??= new Set());
  }

  get packetIds(): PacketIdAllocator {
    return (this.#packetIds ??= new PacketIdAllocator());
  }
  connection: Connection | undefined;
  will: WillRecord | undefined;
  willTimer: Timer | undefined;
  expiryTimer: Timer | undefined;
  disconnectedAtMs: number | undefined;
  /** Deliveries routed to this session whose commit is pending and that were not reserved:
   * until they are queued, later messages must not overtake them by reserving a window slot. */
  pendingDispatch = 0;
  /** Payload bytes of the `pendingDispatch` deliveries (they count against maxQueuedBytes). */
  pendingDispatchBytes = 0;
  /** planRoute's scratch: the stamp of the last call that planned for this session, and its target. */
  routeStamp = 0;
  routeTarget: Target | undefined = undefined;
  /** Deliveries in flight whose PUBLISH leaves only once a commit is done (QoS 2, and whatever
   * was put in flight behind one): while any wait, a later QoS 1 delivery must not be sent ahead
   * of them. */
  heldForCommit = 0;
  /** Messages dropped because the queue was full. */
  droppedCount = 0;
  /** Retained replays not finished yet, oldest first (undefined when none: the pump checks only that). */
  replays: RetainedReplay[] | undefined = undefined;
  /** A page of the replay is being stored (persistent session, QoS > 0): the next waits for it. */
  replayStoring = false;

  constructor(hub: Hub, clientId: string, protocolVersion: ProtocolVersion) {
    this.hub = hub;
    this.clientId = clientId;
    this.protocolVersion = protocolVersion;
  }

  /** True while a network connection holds the session. */
  get isConnected(): boolean {
    return this.connection !== undefined;
  }
}
