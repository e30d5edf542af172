// Message-flow counters of the engine: plain numbers bumped on the hot path (never an object or
// an event per message), read by metrics when they are scraped.

/** Three counters indexed by QoS (0, 1, 2). */
export type PerQos = [number, number, number];

/** Counters across every connection and session, since start. */
export interface MessageStats {
  /** PUBLISH packets received from clients (refused ones included), by QoS. */
  readonly received: PerQos;
  /** Payload bytes of those PUBLISH packets, by QoS. */
  readonly receivedBytes: PerQos;
  /** PUBLISH packets written to clients (resends included), by the QoS they were delivered with. */
  readonly sent: PerQos;
  /** Payload bytes of those PUBLISH packets, by QoS. */
  readonly sentBytes: PerQos;
  /** QoS 0 deliveries dropped because the client's socket buffer was full. */
  droppedQos0: number;
  /** Deliveries dropped because the session's queue was full (its message or byte limit). */
  droppedQueueFull: number;
  /** Retained messages not replayed to a new subscription because they are larger than its session's whole queue. */
  droppedRetainedTooLarge: number;
  /** PUBLISH and SUBSCRIBE requests refused by the authorizer (every one; their events are rate-limited). */
  deniedPublish: number;
  deniedSubscribe: number;
}

/** Counters at zero. */
export function newMessageStats(): MessageStats {
  return { received: [0, 0, 0], receivedBytes: [0, 0, 0], sent: [0, 0, 0], sentBytes: [0, 0, 0], droppedQos0: 0, droppedQueueFull: 0, droppedRetainedTooLarge: 0, deniedPublish: 0, deniedSubscribe: 0 };
}
