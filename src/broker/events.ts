// Broker events as data: what happened to clients and sessions, as one typed union, emitted to
// an EventSink. The audit log is one subscriber; metrics and webhooks plug in the same way. The
// event names are written here only (EventType); everything else refers to them through it.
import type { ProtocolVersion } from '../mqtt/packet.ts';
import type { Logger } from './ports.ts';

/** Every event name. The values are what the audit log stores in `audit_events.event`. */
export const EventType = {
  Connect: 'connect',
  ConnectRefused: 'connect_refused',
  Disconnect: 'disconnect',
  Takeover: 'takeover',
  Subscribe: 'subscribe',
  Unsubscribe: 'unsubscribe',
  SessionExpired: 'session_expired',
  QueueOverflow: 'queue_overflow',
  RetainedQuotaExceeded: 'retained_quota_exceeded',
  InflightLimitExceeded: 'inflight_limit_exceeded',
  MessageDropped: 'message_dropped',
  AccessDenied: 'access_denied',
  UpgradeRefused: 'upgrade_refused',
  SessionEnded: 'session_ended',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/** The transports a client can come through. */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss';

/** Who ended a connection. */
export type InitiatedBy = 'client' | 'server' | 'network';

/** Fields every event carries. */
interface EventBase {
  hub: string;
}

/** A CONNECT was accepted (CONNACK 0 sent). */
export interface ConnectEvent extends EventBase {
  type: typeof EventType.Connect;
  clientId: string;
  remoteAddress: string;
  userId: string | undefined;
  /** How the client was authenticated ("anonymous", "jwt", ...). */
  method: string | undefined;
  transport: Transport;
  protocolVersion: ProtocolVersion;
  cleanStart: boolean;
  sessionPresent: boolean;
  username: string | undefined;
}

/** A connection was refused before or at CONNACK. */
export interface ConnectRefusedEvent extends EventBase {
  type: typeof EventType.ConnectRefused;
  clientId: string | undefined;
  remoteAddress: string;
  reasonCode: number;
  reason: string | undefined;
  transport: Transport;
  protocolVersion: ProtocolVersion;
}

/** A connection holding a session ended. */
export interface DisconnectEvent extends EventBase {
  type: typeof EventType.Disconnect;
  clientId: string;
  remoteAddress: string;
  reasonCode: number | undefined;
  initiatedBy: InitiatedBy;
  willPublished: boolean;
}

/** A new connection took over a live session [MQTT-3.1.4-3]. */
export interface TakeoverEvent extends EventBase {
  type: typeof EventType.Takeover;
  clientId: string;
  remoteAddress: string;
  previousAddress: string;
}

/** A SUBSCRIBE was answered (one reason code per filter). */
export interface SubscribeEvent extends EventBase {
  type: typeof EventType.Subscribe;
  clientId: string;
  userId: string | undefined;
  filters: Array<{ topicFilter: string; qos: number; reasonCode: number | undefined }>;
}

/** An UNSUBSCRIBE was answered. */
export interface UnsubscribeEvent extends EventBase {
  type: typeof EventType.Unsubscribe;
  clientId: string;
  userId: string | undefined;
  topicFilters: string[];
  /** The filters that were subscribed and are now removed. */
  removed: string[];
}

/** A disconnected session reached its expiry and ended. */
export interface SessionExpiredEvent extends EventBase {
  type: typeof EventType.SessionExpired;
  clientId: string;
}

/** A message was dropped for a session whose queue is full (first drop, then every 1000th). */
export interface QueueOverflowEvent extends EventBase {
  type: typeof EventType.QueueOverflow;
  clientId: string;
  dropped: number;
  topicName: string;
  queued: number;
  queuedBytes: number;
}

/** A retained PUBLISH was refused for the hub's retained limits (first, then every 1000th per connection). */
export interface RetainedQuotaExceededEvent extends EventBase {
  type: typeof EventType.RetainedQuotaExceeded;
  clientId: string;
  userId: string | undefined;
  topicName: string;
  payloadBytes: number;
  refusals: number;
  retained: number;
  retainedBytes: number;
}

/** A 3.1.1 client went over the unacknowledged-publish limit and was closed. */
export interface InflightLimitExceededEvent extends EventBase {
  type: typeof EventType.InflightLimitExceeded;
  clientId: string;
  limit: number;
}

/** A message was not delivered to one session for a reason other than its queue limit (not audited). */
export interface MessageDroppedEvent extends EventBase {
  type: typeof EventType.MessageDropped;
  clientId: string;
  topicName: string;
  /** `client_buffer_full`: QoS 0 while the client's socket buffer is full; `retained_too_large`: a retained message larger than the session's queue. */
  reason: 'client_buffer_full' | 'retained_too_large';
}

/**
 * PUBLISH or SUBSCRIBE refused by the authorizer. Rate-limited per connection: the first denial,
 * then at most one event per interval, `count` carrying every denial since the previous event.
 */
export interface AccessDeniedEvent extends EventBase {
  type: typeof EventType.AccessDenied;
  clientId: string;
  userId: string | undefined;
  action: 'publish' | 'subscribe';
  /** The topic name or filter of the latest denial. */
  name: string;
  count: number;
}

/** A WebSocket upgrade refused before any MQTT was spoken (bad or missing token, anonymous access off). */
export interface UpgradeRefusedEvent extends EventBase {
  type: typeof EventType.UpgradeRefused;
  remoteAddress: string;
  status: number;
  /** Why, in words (never the token). */
  reason: string;
  transport: Transport;
}

/** A session ended for good (expired, discarded by clean start, or a non-persistent session's connection closed). Not audited. */
export interface SessionEndedEvent extends EventBase {
  type: typeof EventType.SessionEnded;
  clientId: string;
}

/** Everything the engine reports. */
export type BrokerEvent =
  | ConnectEvent | ConnectRefusedEvent | DisconnectEvent | TakeoverEvent | SubscribeEvent | UnsubscribeEvent
  | SessionExpiredEvent | QueueOverflowEvent | RetainedQuotaExceededEvent | InflightLimitExceededEvent | MessageDroppedEvent
  | AccessDeniedEvent | UpgradeRefusedEvent | SessionEndedEvent;

/** A consumer of broker events. Called synchronously on the engine's turn: it must not block or throw. */
export interface EventSink {
  emit(event: BrokerEvent): void;
  /** The event types it wants; all when absent. */
  readonly types?: readonly EventType[];
}

/** Fans events out to the sinks that want them; `wants` lets an emitter skip building an event nobody takes. */
export class EventBus implements EventSink {
  readonly #sinks: EventSink[] = [];
  readonly #wanted = new Set<string>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Add a subscriber (it receives the types it lists, or every event). */
  subscribe(sink: EventSink): void {
    this.#sinks.push(sink);
    for (const t of sink.types ?? Object.values(EventType)) this.#wanted.add(t);
  }

  /** True if some subscriber takes events of `type`. */
  wants(type: EventType): boolean {
    return this.#wanted.has(type);
  }

  emit(event: BrokerEvent): void {
    for (const sink of this.#sinks) {
      if (sink.types && !sink.types.includes(event.type)) continue;
      // One subscriber's failure must not cost the others their event, nor the engine its turn
      try {
        sink.emit(event);
      } catch (err) {
        this.#logger.error({ err, event: event.type }, 'event subscriber failed');
      }
    }
  }
}
