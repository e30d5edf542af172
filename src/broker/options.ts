// Limits and feature switches of the engine; the values a broker advertises in CONNACK.

/** Engine configuration (filled from config.ts by main.ts, or directly by tests). */
export interface BrokerOptions {
  /** Id of this broker node (sessions record their owner). */
  nodeId: string;
  /** Hub of TCP clients and of `/mqtt` WebSocket clients. */
  defaultHub: string;
  /** Largest inbound packet; advertised as Maximum Packet Size. */
  maxPacketBytes: number;
  /** Inbound QoS 1/2 publishes a client may have unacknowledged; advertised as Receive Maximum. */
  receiveMaximum: number;
  /** Outbound QoS 1/2 publishes in flight per session (capped by the client's Receive Maximum). */
  maxInflight: number;
  /** Topic aliases a client may use toward the broker; advertised as Topic Alias Maximum. */
  topicAliasMaximum: number;
  maximumQos: 0 | 1 | 2;
  retainAvailable: boolean;
  wildcardSubscriptionAvailable: boolean;
  subscriptionIdentifiersAvailable: boolean;
  sharedSubscriptionAvailable: boolean;
  /** Upper bound for a client's keep alive (0: none); returned as Server Keep Alive in 5.0. */
  maxKeepAliveSec: number;
  /** Upper bound for Session Expiry Interval (seconds). */
  maxSessionExpirySec: number;
  /** Time a socket gets to send CONNECT. */
  connectTimeoutMs: number;
  /** Messages queued per session before new ones are dropped. */
  maxQueuedMessages: number;
  /** Payload bytes queued per session before new messages are dropped. */
  maxQueuedBytes: number;
  /** Transport buffer above which QoS 1/2 sending pauses until drain. */
  softBufferBytes: number;
  /** Transport buffer above which QoS 0 messages to that client are dropped. */
  hardBufferBytes: number;
  /**
   * Store backlog (units of work / bytes not committed yet) above which publishers that need a
   * commit stop being read (TCP) or have their acknowledgements held (WebSocket) until it is half that.
   */
  maxStoreBacklogUnits: number;
  maxStoreBacklogBytes: number;
}

export const defaultBrokerOptions: BrokerOptions = {
  nodeId: 'node-1',
  defaultHub: 'default',
  maxPacketBytes: 1024 * 1024,
  receiveMaximum: 65535,
  maxInflight: 1024,
  topicAliasMaximum: 64,
  maximumQos: 2,
  retainAvailable: true,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: true,
  sharedSubscriptionAvailable: true,
  maxKeepAliveSec: 0,
  maxSessionExpirySec: 0xffffffff,
  connectTimeoutMs: 10_000,
  maxQueuedMessages: 100_000,
  maxQueuedBytes: 64 * 1024 * 1024,
  softBufferBytes: 256 * 1024,
  hardBufferBytes: 4 * 1024 * 1024,
  maxStoreBacklogUnits: 50_000,
  maxStoreBacklogBytes: 64 * 1024 * 1024,
};
