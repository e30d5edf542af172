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
  /** Largest topic name in UTF-8 bytes (PUBLISH, will, server publish). */
  maxTopicBytes: number;
  /** Largest topic filter in UTF-8 bytes, `$share/{group}/` included. */
  maxTopicFilterBytes: number;
  /** Most levels in a topic name or filter. */
  maxTopicLevels: number;
  /** Largest client id in UTF-8 bytes. */
  maxClientIdBytes: number;
  /** Hubs that may exist; a CONNECT that would create one more is refused (0x97). */
  maxHubs: number;
  /** Sessions in all hubs; a CONNECT that would create one more is refused (0x97). */
  maxSessions: number;
  /** Subscriptions one session may hold; a SUBSCRIBE beyond it fails per filter (0x97). */
  maxSubscriptionsPerSession: number;
  /** Retained messages per hub; a retained PUBLISH that would add one more fails (0x97). */
  maxRetainedMessages: number;
  /** Retained payload bytes per hub; a retained PUBLISH that would exceed it fails (0x97). */
  maxRetainedBytes: number;
  /** Unacknowledged inbound QoS 1/2 publishes of a 3.1.1 client (it has no Receive Maximum): above it, close. */
  maxInflightInV3: number;
  /** Client connections in total; more are refused at accept. */
  maxConnections: number;
  /** Client connections from one remote address; more are refused at accept. */
  maxConnectionsPerAddress: number;
  /** New connections per second from one remote address (token bucket refill rate). */
  connectionRatePerSec: number;
  /** New connections one remote address may open at once (token bucket size). */
  connectionBurst: number;
  /** Bytes a connection may send before its CONNECT is decided (CONNECT included). */
  maxPreConnectBytes: number;
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
  // With a hub of at most 128 bytes these keep (hub, client_id, topic_filter) well under
  // PostgreSQL's btree row limit of 2,704 bytes even for incompressible text
  maxTopicBytes: 1024,
  maxTopicFilterBytes: 1024,
  maxTopicLevels: 128,
  maxClientIdBytes: 256,
  maxHubs: 1000,
  maxSessions: 1_000_000,
  maxSubscriptionsPerSession: 1000,
  maxRetainedMessages: 100_000,
  maxRetainedBytes: 256 * 1024 * 1024,
  maxInflightInV3: 65535,
  maxConnections: 100_000,
  maxConnectionsPerAddress: 1000,
  connectionRatePerSec: 200,
  connectionBurst: 1000,
  maxPreConnectBytes: 2 * 1024 * 1024,
  maxStoreBacklogUnits: 50_000,
  maxStoreBacklogBytes: 64 * 1024 * 1024,
};
