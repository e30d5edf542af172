// SessionLink: the port through which a session reaches whatever is attached to it (an MQTT
// connection today; a Web PubSub JSON connection next). The session never sees sockets or codecs.
import type { Principal } from './ports.ts';
import type { ReasonCode } from '../mqtt/reason-code.ts';
import type { Delivery, EncodeCache } from './delivery.ts';

/** What a session's outbox needs from the connection attached to it. */
export interface SessionLink {
  /** Who is on the other end, once authenticated (for permission checks made from outside, e.g. REST). */
  readonly principal: Principal | undefined;
  /** True from the moment the session is attached (CONNACK sent) until the link ends. */
  readonly isReady: boolean;
  /** QoS 1/2 deliveries the peer takes unacknowledged (MQTT: min(client's Receive Maximum, maxInflight)). */
  readonly sendQuota: number;
  /** True while the transport holds more than the soft buffer limit (QoS 1/2 sending waits for drain). */
  readonly isBackpressured: boolean;
  /** Output not yet taken by the peer: this turn's batch plus the transport's buffer. */
  readonly pendingBytes: number;
  /** The peer's address, for the audit log. */
  readonly remoteAddress: string;
  /**
   * Send a delivery (its packet id is set for QoS > 0). False when the peer cannot take this
   * message at all (larger than its maximum packet size): it is then discarded as if delivered.
   */
  deliver(d: Delivery, dup: boolean, cache: EncodeCache | undefined): boolean;
  /** Send PUBREL for an outbound QoS 2 delivery the peer already acknowledged with PUBREC. */
  release(packetId: number): void;
  /** End the link; MQTT 5 peers get DISCONNECT with `reasonCode` first. */
  end(reasonCode: ReasonCode | undefined, reason?: string): void;
  /** End the link because of an error (a failed store write the peer must not outlive). */
  fail(err: unknown): void;
}
