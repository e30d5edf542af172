// ByteChannel: what a transport hands the broker for one client connection. Bytes in and out,
// nothing MQTT-specific.

/** Who consumes a channel's events (the broker's connection): methods, not closures, so an idle
 * connection costs no function objects. A throw from `channelData` or `channelDrain` makes the
 * transport drop the connection. */
export interface ChannelSink {
  channelData(bytes: Buffer): void;
  /** The transport's buffer has drained after a write() returned false. */
  channelDrain(): void;
  /** Called once, when the connection is gone (either side). */
  channelClosed(): void;
}

/** One client network connection as a byte stream. */
export interface ByteChannel {
  readonly transport: 'tcp' | 'tls' | 'ws' | 'wss';
  readonly remoteAddress: string;
  /** Write one buffer; false means the transport is buffering and `channelDrain` will follow. */
  write(bytes: Buffer): boolean;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  bufferedBytes(): number;
  /** Close after flushing what was written. */
  close(): void;
  /** Stop reading from the peer until `resumeReading` (transports that can: TCP, TLS). */
  pauseReading?(): void;
  resumeReading?(): void;
  /** Set once by the consumer; events before that are dropped. */
  sink: ChannelSink | undefined;
}

/** Details a transport learned while accepting a connection. */
export interface AcceptInfo {
  hub: string;
  /** Token from the WebSocket upgrade (query `access_token` or `Authorization: Bearer`). */
  upgradeToken: string | undefined;
  /** The client's TLS certificate, when the transport requested one and the client sent it. */
  clientCertificate?: PeerCertificate;
}

/** A client certificate as the transport saw it (for authentication and the upstream `connect` event). */
export interface PeerCertificate {
  /** SHA-1 of the DER bytes, lowercase hex (40 characters). */
  thumbprint: string;
  /** The certificate as PEM text. */
  pem: string;
  /** Subject common name, if any. */
  subjectCN: string | undefined;
  /** Subject alternative names as Node prints them ("DNS:a.example", "email:x@y", "URI:..."). */
  subjectAltNames: string[];
  /** Whether the chain verified against the configured CA (always true when such certificates are required). */
  authorized: boolean;
}

/** How transports hand new connections to whoever consumes them. */
export type OnConnection = (channel: ByteChannel, info: AcceptInfo) => void;
